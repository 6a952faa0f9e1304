use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use kube::core::DynamicObject;
use serde_json::json;

use super::*;
use crate::source::BoxStream;

fn cm() -> ResourceType {
    ResourceType::namespaced("", "v1", "ConfigMap", "configmaps")
}

fn secret() -> ResourceType {
    ResourceType::namespaced("", "v1", "Secret", "secrets")
}

fn obj(rt: &ResourceType, ns: &str, name: &str, body: serde_json::Value) -> SourceObject {
    let mut o = DynamicObject::new(name, &rt.api_resource()).within(ns);
    o.data = body;
    SourceObject {
        resource: rt.clone(),
        object: o,
    }
}

struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A watch the test feeds: (namespace, `resource.group`, its channel).
type FakeFeed = (Option<String>, String, UnboundedSender<Item>);

/// A source whose watches the test feeds by hand; counts the watches open.
#[derive(Default)]
struct FakeSource {
    feeds: Mutex<Vec<FakeFeed>>,
    open: Arc<AtomicUsize>,
    /// Refuse watches across namespaces with a 403.
    forbid_cluster: bool,
}

impl FakeSource {
    /// Send `event` to every watch of its type that covers `namespace`.
    fn push(&self, namespace: &str, event: SourceEvent) {
        let rt = match &event {
            SourceEvent::Applied(o) | SourceEvent::Deleted(o) => o.resource.resource_group(),
            SourceEvent::Relisting(rt) | SourceEvent::Resynced(rt) => rt.resource_group(),
        };
        for (ns, t, tx) in self.feeds.lock().unwrap().iter() {
            if *t == rt && ns.as_deref().is_none_or(|n| n == namespace) {
                let _ = tx.send(Ok(event.clone()));
            }
        }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Namespaces watched (`None`: across the cluster).
    fn watched(&self) -> Vec<Option<String>> {
        let feeds = self.feeds.lock().unwrap();
        let mut v: Vec<_> = feeds
            .iter()
            .filter(|(_, _, tx)| !tx.is_closed())
            .map(|(ns, _, _)| ns.clone())
            .collect();
        v.sort();
        v
    }
}

#[async_trait::async_trait]
impl ResourceSource for FakeSource {
    async fn list(&self, _: &SourceScope) -> Result<Vec<SourceObject>, SourceError> {
        Ok(vec![])
    }

    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>> {
        let (tx, mut rx) = unbounded_channel();
        if self.forbid_cluster && scope.namespace.is_none() {
            let status = kube::core::Status::failure("forbidden", "Forbidden").with_code(403);
            let _ = tx.send(Err(
                SourceError::new("watch", "forbidden", false).with_cause(Arc::new(status))
            ));
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        let guard = Open(self.open.clone());
        self.feeds
            .lock()
            .unwrap()
            .push((scope.namespace.clone(), scope.types[0].resource_group(), tx));
        Box::pin(async_stream(move |cx| {
            let _ = &guard;
            rx.poll_recv(cx)
        }))
    }

    async fn get<'a>(
        &self,
        _: &ResourceType,
        _: Option<&'a str>,
        _: &str,
    ) -> Result<Option<DynamicObject>, SourceError> {
        Ok(None)
    }
}

fn async_stream<F>(f: F) -> impl Stream<Item = Item> + Send
where
    F: FnMut(&mut Context<'_>) -> Poll<Option<Item>> + Send + Unpin,
{
    futures::stream::poll_fn(f)
}

async fn next(sub: &mut Subscription) -> SourceEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
        .expect("the subscription goes on")
        .expect("no error")
}

fn name_of(e: &SourceEvent) -> String {
    match e {
        SourceEvent::Applied(o) => format!("applied {}", o.object.metadata.name.as_deref().unwrap()),
        SourceEvent::Deleted(o) => format!("deleted {}", o.object.metadata.name.as_deref().unwrap()),
        SourceEvent::Relisting(rt) => format!("relisting {}", rt.kind),
        SourceEvent::Resynced(rt) => format!("resynced {}", rt.kind),
    }
}

/// Let the feed tasks run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn one_watch_per_type_serves_every_namespace() {
    let source = Arc::new(FakeSource::default());
    let watches = SharedWatches::new(source.clone());
    let mut a = watches.subscribe(Some("a"), &[cm(), secret()]);
    let mut b = watches.subscribe(Some("b"), &[cm(), secret()]);
    settle().await;
    assert_eq!(source.open(), 2, "one watch per type, not per reader");
    assert_eq!(watches.watch_count(), 2);
    assert_eq!(source.watched(), vec![None, None]);

    source.push("a", SourceEvent::Relisting(cm()));
    source.push(
        "a",
        SourceEvent::Applied(obj(&cm(), "a", "x", json!({"data": {"v": "1"}}))),
    );
    source.push(
        "b",
        SourceEvent::Applied(obj(&cm(), "b", "y", json!({"data": {"v": "1"}}))),
    );
    source.push(
        "c",
        SourceEvent::Applied(obj(&cm(), "c", "z", json!({"data": {"v": "1"}}))),
    );
    source.push("a", SourceEvent::Resynced(cm()));
    let got_a: Vec<String> = [next(&mut a).await, next(&mut a).await, next(&mut a).await]
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(got_a, ["relisting ConfigMap", "applied x", "resynced ConfigMap"]);
    let got_b: Vec<String> = [next(&mut b).await, next(&mut b).await, next(&mut b).await]
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(got_b, ["relisting ConfigMap", "applied y", "resynced ConfigMap"]);
    settle().await;
    assert!(a.rx.try_recv().is_err(), "nothing of another namespace");
    assert!(b.rx.try_recv().is_err(), "nothing of another namespace");
}

#[tokio::test]
async fn changes_only_to_status_are_dropped_for_everyone() {
    let source = Arc::new(FakeSource::default());
    let watches = SharedWatches::new(source.clone());
    let mut a1 = watches.subscribe(Some("a"), &[cm()]);
    let mut a2 = watches.subscribe(Some("a"), &[cm()]);
    settle().await;
    let v1 = json!({"data": {"v": "1"}, "status": {"n": 1}});
    source.push("a", SourceEvent::Applied(obj(&cm(), "a", "x", v1)));
    let mut status_only = obj(&cm(), "a", "x", json!({"data": {"v": "1"}, "status": {"n": 2}}));
    status_only.object.metadata.resource_version = Some("7".into());
    source.push("a", SourceEvent::Applied(status_only));
    source.push(
        "a",
        SourceEvent::Applied(obj(&cm(), "a", "x", json!({"data": {"v": "2"}}))),
    );
    source.push("a", SourceEvent::Deleted(obj(&cm(), "a", "x", json!({}))));
    for sub in [&mut a1, &mut a2] {
        let got: Vec<String> = [next(sub).await, next(sub).await, next(sub).await]
            .iter()
            .map(name_of)
            .collect();
        assert_eq!(got, ["applied x", "applied x", "deleted x"]);
        match next_now(sub) {
            None => {}
            Some(e) => panic!("unexpected {}", name_of(&e)),
        }
    }
    // After the delete, the same content again is a change (the fingerprint went with the object).
    source.push(
        "a",
        SourceEvent::Applied(obj(&cm(), "a", "x", json!({"data": {"v": "2"}}))),
    );
    assert_eq!(name_of(&next(&mut a1).await), "applied x");
}

fn next_now(sub: &mut Subscription) -> Option<SourceEvent> {
    sub.rx.try_recv().ok().map(|r| r.expect("no error"))
}

#[tokio::test]
async fn a_late_reader_is_told_the_list_is_complete() {
    let source = Arc::new(FakeSource::default());
    let watches = SharedWatches::new(source.clone());
    let mut early = watches.subscribe(Some("a"), &[cm()]);
    settle().await;
    source.push("a", SourceEvent::Relisting(cm()));
    source.push("a", SourceEvent::Resynced(cm()));
    assert_eq!(name_of(&next(&mut early).await), "relisting ConfigMap");
    assert_eq!(name_of(&next(&mut early).await), "resynced ConfigMap");
    let mut late = watches.subscribe(Some("b"), &[cm()]);
    assert_eq!(name_of(&next(&mut late).await), "resynced ConfigMap");
    assert_eq!(source.open(), 1, "the late reader joined the running watch");
}

#[tokio::test]
async fn the_watch_ends_with_its_last_reader() {
    let source = Arc::new(FakeSource::default());
    let watches = SharedWatches::new(source.clone());
    let a = watches.subscribe(Some("a"), &[cm()]);
    let b = watches.subscribe(Some("b"), &[cm(), secret()]);
    settle().await;
    assert_eq!(source.open(), 2);
    drop(b);
    settle().await;
    assert_eq!(source.open(), 1, "secrets had only b");
    assert_eq!(watches.watch_count(), 1);
    drop(a);
    settle().await;
    assert_eq!(source.open(), 0);
    assert_eq!(watches.watch_count(), 0);
}

#[tokio::test]
async fn a_forbidden_cluster_watch_falls_back_to_namespaces() {
    let source = Arc::new(FakeSource {
        forbid_cluster: true,
        ..FakeSource::default()
    });
    let watches = SharedWatches::new(source.clone());
    let mut a = watches.subscribe(Some("a"), &[cm()]);
    let b = watches.subscribe(Some("b"), &[cm()]);
    settle().await;
    assert_eq!(
        source.watched(),
        vec![Some("a".to_owned()), Some("b".to_owned())],
        "one watch per read namespace after the 403"
    );
    assert_eq!(source.open(), 2, "the refused cluster-wide watch is closed");
    assert_eq!(watches.per_namespace(&[cm(), secret()]), vec![cm()]);
    source.push("a", SourceEvent::Relisting(cm()));
    source.push(
        "a",
        SourceEvent::Applied(obj(&cm(), "a", "x", json!({"data": {}}))),
    );
    source.push("a", SourceEvent::Resynced(cm()));
    let got: Vec<String> = [next(&mut a).await, next(&mut a).await, next(&mut a).await]
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(got, ["relisting ConfigMap", "applied x", "resynced ConfigMap"]);
    // A new reader of another namespace gets its own watch; a reader leaving closes its namespace's.
    let mut c = watches.subscribe(Some("c"), &[cm()]);
    settle().await;
    assert_eq!(source.open(), 3);
    drop(b);
    settle().await;
    assert_eq!(source.open(), 2);
    source.push("c", SourceEvent::Resynced(cm()));
    assert_eq!(name_of(&next(&mut c).await), "resynced ConfigMap");
}

#[test]
fn the_fingerprint_ignores_what_the_server_alone_changes() {
    let a = obj(&cm(), "a", "x", json!({"data": {"v": "1"}, "status": {"n": 1}}));
    let mut b = obj(&cm(), "a", "x", json!({"data": {"v": "1"}, "status": {"n": 2}}));
    b.object.metadata.resource_version = Some("9".into());
    b.object.metadata.generation = Some(3);
    assert_eq!(replicable_fingerprint(&a), replicable_fingerprint(&b));
    let c = obj(&cm(), "a", "x", json!({"data": {"v": "2"}}));
    assert_ne!(replicable_fingerprint(&a), replicable_fingerprint(&c));
}
