package main

// --simulate-workloads: with no kubelets or controllers, mark Deployments,
// StatefulSets, DaemonSets and ReplicaSets as fully rolled out, so "wait until ready"
// logic (and kubectl rollout status) can be tested. Pods are never created.

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

type workloadKey struct{ kind, namespace, name string }

type workloadSimulator struct {
	client  kubernetes.Interface
	factory informers.SharedInformerFactory
	queue   workqueue.TypedRateLimitingInterface[workloadKey]
}

func newWorkloadSimulator(client kubernetes.Interface, factory informers.SharedInformerFactory) *workloadSimulator {
	s := &workloadSimulator{client: client, factory: factory, queue: workqueue.NewTypedRateLimitingQueue(
		workqueue.NewTypedItemExponentialFailureRateLimiter[workloadKey](20*time.Millisecond, 2*time.Second))}
	add := func(kind string) cache.ResourceEventHandler {
		f := func(obj interface{}) {
			if m, ok := obj.(metav1.Object); ok {
				s.queue.Add(workloadKey{kind, m.GetNamespace(), m.GetName()})
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n interface{}) { f(n) }}
	}
	apps := factory.Apps().V1()
	_, _ = apps.Deployments().Informer().AddEventHandler(add("Deployment"))
	_, _ = apps.StatefulSets().Informer().AddEventHandler(add("StatefulSet"))
	_, _ = apps.DaemonSets().Informer().AddEventHandler(add("DaemonSet"))
	_, _ = apps.ReplicaSets().Informer().AddEventHandler(add("ReplicaSet"))
	// Nodes decide how many pods a DaemonSet wants.
	nodeChanged := func(interface{}) {
		for _, o := range apps.DaemonSets().Informer().GetStore().List() {
			ds := o.(*appsv1.DaemonSet)
			s.queue.Add(workloadKey{"DaemonSet", ds.Namespace, ds.Name})
		}
	}
	_, _ = factory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nodeChanged, UpdateFunc: func(_, n interface{}) { nodeChanged(n) }, DeleteFunc: nodeChanged})
	return s
}

func (s *workloadSimulator) run(ctx context.Context) {
	defer s.queue.ShutDown()
	s.factory.Start(ctx.Done())
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for s.next(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (s *workloadSimulator) next(ctx context.Context) bool {
	k, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(k)
	if err := s.sync(ctx, k); err != nil {
		if !errors.IsNotFound(err) {
			klog.V(2).InfoS("simulate-workloads", "key", k, "err", err)
			s.queue.AddRateLimited(k)
		}
		return true
	}
	s.queue.Forget(k)
	return true
}

func revisionName(name string, spec interface{}) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%#v", spec)
	return fmt.Sprintf("%s-%x", name, h.Sum32()%0xfffffff)
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func (s *workloadSimulator) sync(ctx context.Context, k workloadKey) error {
	apps := s.client.AppsV1()
	switch k.kind {
	case "Deployment":
		d, err := s.factory.Apps().V1().Deployments().Lister().Deployments(k.namespace).Get(k.name)
		if err != nil {
			return err
		}
		n := replicasOf(d.Spec.Replicas)
		st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n,
			AvailableReplicas: n}
		rs := revisionName(d.Name, d.Spec.Template)
		st.Conditions = []appsv1.DeploymentCondition{
			deployCond(d, appsv1.DeploymentAvailable, "MinimumReplicasAvailable", "Deployment has minimum availability."),
			deployCond(d, appsv1.DeploymentProgressing, "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", rs)),
		}
		if apiequality.Semantic.DeepEqual(st, d.Status) {
			return nil
		}
		d = d.DeepCopy()
		d.Status = st
		_, err = apps.Deployments(k.namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{FieldManager: "kapi-simulate-workloads"})
		return err
	case "StatefulSet":
		ss, err := s.factory.Apps().V1().StatefulSets().Lister().StatefulSets(k.namespace).Get(k.name)
		if err != nil {
			return err
		}
		n := replicasOf(ss.Spec.Replicas)
		rev := revisionName(ss.Name, ss.Spec.Template)
		st := appsv1.StatefulSetStatus{ObservedGeneration: ss.Generation, Replicas: n, ReadyReplicas: n, CurrentReplicas: n,
			UpdatedReplicas: n, AvailableReplicas: n, CurrentRevision: rev, UpdateRevision: rev, CollisionCount: ss.Status.CollisionCount}
		if apiequality.Semantic.DeepEqual(st, ss.Status) {
			return nil
		}
		ss = ss.DeepCopy()
		ss.Status = st
		_, err = apps.StatefulSets(k.namespace).UpdateStatus(ctx, ss, metav1.UpdateOptions{FieldManager: "kapi-simulate-workloads"})
		return err
	case "ReplicaSet":
		rs, err := s.factory.Apps().V1().ReplicaSets().Lister().ReplicaSets(k.namespace).Get(k.name)
		if err != nil {
			return err
		}
		n := replicasOf(rs.Spec.Replicas)
		st := appsv1.ReplicaSetStatus{ObservedGeneration: rs.Generation, Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		if apiequality.Semantic.DeepEqual(st, rs.Status) {
			return nil
		}
		rs = rs.DeepCopy()
		rs.Status = st
		_, err = apps.ReplicaSets(k.namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{FieldManager: "kapi-simulate-workloads"})
		return err
	case "DaemonSet":
		ds, err := s.factory.Apps().V1().DaemonSets().Lister().DaemonSets(k.namespace).Get(k.name)
		if err != nil {
			return err
		}
		nodes, err := s.factory.Core().V1().Nodes().Lister().List(labels.SelectorFromSet(ds.Spec.Template.Spec.NodeSelector))
		if err != nil {
			return err
		}
		n := int32(len(nodes))
		st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: n, CurrentNumberScheduled: n,
			NumberReady: n, UpdatedNumberScheduled: n, NumberAvailable: n, CollisionCount: ds.Status.CollisionCount}
		if apiequality.Semantic.DeepEqual(st, ds.Status) {
			return nil
		}
		ds = ds.DeepCopy()
		ds.Status = st
		_, err = apps.DaemonSets(k.namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{FieldManager: "kapi-simulate-workloads"})
		return err
	}
	return nil
}

func deployCond(d *appsv1.Deployment, t appsv1.DeploymentConditionType, reason, msg string) appsv1.DeploymentCondition {
	for _, c := range d.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue && c.Reason == reason && c.Message == msg {
			return c
		}
	}
	now := metav1.Now()
	return appsv1.DeploymentCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg,
		LastUpdateTime: now, LastTransitionTime: now}
}
