package main

// The garbage collector (kube-controller-manager's job, reimplemented small). It watches
// the metadata of every resource (built-in and custom, through discovery) and:
//   - deletes an object when none of its owners exists any more (matched by uid), or
//     removes the dangling references when some owners remain;
//   - for an owner deleted with propagationPolicy=Orphan ("orphan" finalizer): removes
//     the owner reference from its dependents, then the finalizer;
//   - for an owner deleted with propagationPolicy=Foreground ("foregroundDeletion"
//     finalizer): deletes its dependents and removes the finalizer once no dependent
//     with blockOwnerDeletion=true remains.
// Background deletion (the default) is the first rule applied after the owner is gone.

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

type gcResource struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

type gcInformer struct {
	res      gcResource
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
}

type garbageCollector struct {
	meta  metadata.Interface
	disco discovery.DiscoveryInterface

	mu        sync.Mutex
	informers map[schema.GroupVersionResource]*gcInformer
	kinds     map[schema.GroupVersionKind]gcResource // every served version, for ownerReferences
	trigger   chan struct{}
}

func newGarbageCollector(meta metadata.Interface, disco discovery.DiscoveryInterface) *garbageCollector {
	return &garbageCollector{meta: meta, disco: disco, informers: map[schema.GroupVersionResource]*gcInformer{},
		kinds: map[schema.GroupVersionKind]gcResource{}, trigger: make(chan struct{}, 1)}
}

func (gc *garbageCollector) poke() {
	select {
	case gc.trigger <- struct{}{}:
	default:
	}
}

func (gc *garbageCollector) run(ctx context.Context) {
	gc.refresh(ctx)
	refresh := time.NewTicker(2 * time.Second)
	resync := time.NewTicker(3 * time.Second)
	defer refresh.Stop()
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			gc.refresh(ctx)
		case <-resync.C:
			if !gc.passAndRest(ctx) {
				return
			}
		case <-gc.trigger:
			time.Sleep(20 * time.Millisecond) // coalesce bursts of events
			if !gc.passAndRest(ctx) {
				return
			}
		}
	}
}

// passAndRest runs a pass, then rests four times as long as it took (false: the context ended). A pass
// scans every object (the real collector keeps a graph and works incrementally): under a steady stream
// of events on a large store (benchmarks: 100,000 objects), passes back to back would keep a core
// busy. On the small stores of tests the rest is a few milliseconds. Events meanwhile coalesce into
// one trigger.
func (gc *garbageCollector) passAndRest(ctx context.Context) bool {
	started := time.Now()
	gc.pass(ctx)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(4 * time.Since(started)):
		return true
	}
}

// refresh starts informers for new resources (e.g. new CRDs) and stops stale ones.
func (gc *garbageCollector) refresh(ctx context.Context) {
	_, lists, err := gc.disco.ServerGroupsAndResources()
	if err != nil && len(lists) == 0 {
		klog.V(2).InfoS("gc discovery failed", "err", err)
		return
	}
	preferred, _ := gc.disco.ServerPreferredResources()
	kinds := map[schema.GroupVersionKind]gcResource{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if !strings.Contains(r.Name, "/") {
				kinds[gv.WithKind(r.Kind)] = gcResource{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
			}
		}
	}
	want := map[schema.GroupVersionResource]gcResource{}
	for _, l := range preferred {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil || gv.Group == "events.k8s.io" {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasString(r.Verbs, "list") || !hasString(r.Verbs, "watch") || !hasString(r.Verbs, "delete") {
				continue
			}
			want[gv.WithResource(r.Name)] = gcResource{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
		}
	}
	gc.mu.Lock()
	defer gc.mu.Unlock()
	gc.kinds = kinds
	for gvr, res := range want {
		if _, ok := gc.informers[gvr]; ok {
			continue
		}
		inf := metadatainformer.NewFilteredMetadataInformer(gc.meta, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(interface{}) { gc.poke() },
			UpdateFunc: func(interface{}, interface{}) { gc.poke() },
			DeleteFunc: func(interface{}) { gc.poke() },
		})
		ictx, cancel := context.WithCancel(ctx)
		go inf.RunWithContext(ictx)
		gc.informers[gvr] = &gcInformer{res: res, informer: inf, cancel: cancel}
	}
	for gvr, i := range gc.informers {
		if _, ok := want[gvr]; !ok {
			i.cancel()
			delete(gc.informers, gvr)
		}
	}
}

type gcNode struct {
	res gcResource
	obj *metav1.PartialObjectMetadata
}

func (gc *garbageCollector) snapshot() ([]*gcNode, map[schema.GroupVersionKind]gcResource) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	var out []*gcNode
	for _, i := range gc.informers {
		if !i.informer.HasSynced() {
			continue
		}
		for _, o := range i.informer.GetStore().List() {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				out = append(out, &gcNode{res: i.res, obj: m})
			}
		}
	}
	return out, gc.kinds
}

func (gc *garbageCollector) client(n *gcNode) metadata.ResourceInterface {
	if n.res.namespaced {
		return gc.meta.Resource(n.res.gvr).Namespace(n.obj.Namespace)
	}
	return gc.meta.Resource(n.res.gvr)
}

const (
	finalizerOrphan     = metav1.FinalizerOrphanDependents
	finalizerForeground = metav1.FinalizerDeleteDependents
)

func (gc *garbageCollector) pass(ctx context.Context) {
	nodes, kinds := gc.snapshot()
	byUID := map[types.UID]*gcNode{}
	dependents := map[types.UID][]*gcNode{}
	for _, n := range nodes {
		byUID[n.obj.UID] = n
		for _, ref := range n.obj.OwnerReferences {
			dependents[ref.UID] = append(dependents[ref.UID], n)
		}
	}
	for _, n := range nodes {
		if n.obj.DeletionTimestamp == nil {
			continue
		}
		if hasString(n.obj.Finalizers, finalizerOrphan) {
			gc.orphan(ctx, n, dependents[n.obj.UID])
		}
		if hasString(n.obj.Finalizers, finalizerForeground) {
			gc.foreground(ctx, n, dependents)
		}
	}
	for _, n := range nodes {
		if len(n.obj.OwnerReferences) == 0 || n.obj.DeletionTimestamp != nil {
			continue
		}
		gc.collect(ctx, n, byUID, dependents, kinds)
	}
}

// ownerState: "solid", "dangling", "waiting" (owner deleting with foreground) or "unknown".
func (gc *garbageCollector) ownerState(ctx context.Context, n *gcNode, ref metav1.OwnerReference, byUID map[types.UID]*gcNode,
	kinds map[schema.GroupVersionKind]gcResource) string {
	if owner, ok := byUID[ref.UID]; ok {
		if owner.obj.DeletionTimestamp != nil && hasString(owner.obj.Finalizers, finalizerForeground) {
			return "waiting"
		}
		return "solid"
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return "unknown"
	}
	res, ok := kinds[gv.WithKind(ref.Kind)]
	if !ok {
		return "unknown"
	}
	var c metadata.ResourceInterface = gc.meta.Resource(res.gvr)
	if res.namespaced {
		if n.obj.Namespace == "" {
			return "dangling" // a cluster-scoped object cannot be owned by a namespaced one
		}
		c = gc.meta.Resource(res.gvr).Namespace(n.obj.Namespace)
	}
	owner, err := c.Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case errors.IsNotFound(err):
		return "dangling"
	case err != nil:
		return "unknown"
	case owner.UID != ref.UID:
		return "dangling"
	case owner.DeletionTimestamp != nil && hasString(owner.Finalizers, finalizerForeground):
		return "waiting"
	}
	return "solid"
}

func (gc *garbageCollector) collect(ctx context.Context, n *gcNode, byUID map[types.UID]*gcNode, dependents map[types.UID][]*gcNode,
	kinds map[schema.GroupVersionKind]gcResource) {
	var solid, remove []types.UID
	waiting := false
	for _, ref := range n.obj.OwnerReferences {
		switch gc.ownerState(ctx, n, ref, byUID, kinds) {
		case "unknown":
			return
		case "solid":
			solid = append(solid, ref.UID)
		case "waiting":
			waiting = true
			remove = append(remove, ref.UID)
		case "dangling":
			remove = append(remove, ref.UID)
		}
	}
	if len(remove) == 0 {
		return
	}
	if len(solid) > 0 {
		gc.removeOwnerRefs(ctx, n, remove)
		return
	}
	policy := metav1.DeletePropagationBackground
	if waiting && len(dependents[n.obj.UID]) > 0 {
		policy = metav1.DeletePropagationForeground
	}
	gc.delete(ctx, n, policy)
}

func (gc *garbageCollector) delete(ctx context.Context, n *gcNode, policy metav1.DeletionPropagation) {
	uid := n.obj.UID
	err := gc.client(n).Delete(ctx, n.obj.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
	if err != nil && !errors.IsNotFound(err) && !errors.IsConflict(err) {
		klog.V(2).InfoS("gc delete failed", "resource", n.res.gvr, "namespace", n.obj.Namespace, "name", n.obj.Name, "err", err)
	} else if err == nil {
		klog.V(3).InfoS("gc deleted", "resource", n.res.gvr, "namespace", n.obj.Namespace, "name", n.obj.Name, "policy", policy)
	}
}

// patchMeta writes metadata fields with a JSON merge patch guarded by resourceVersion.
func (gc *garbageCollector) patchMeta(ctx context.Context, n *gcNode, fields map[string]interface{}) {
	fields["resourceVersion"] = n.obj.ResourceVersion
	data, _ := json.Marshal(map[string]interface{}{"metadata": fields})
	_, err := gc.client(n).Patch(ctx, n.obj.Name, types.MergePatchType, data, metav1.PatchOptions{})
	if err != nil && !errors.IsNotFound(err) && !errors.IsConflict(err) {
		klog.V(2).InfoS("gc patch failed", "resource", n.res.gvr, "namespace", n.obj.Namespace, "name", n.obj.Name, "err", err)
	}
}

func (gc *garbageCollector) removeOwnerRefs(ctx context.Context, n *gcNode, uids []types.UID) {
	drop := map[types.UID]bool{}
	for _, u := range uids {
		drop[u] = true
	}
	keep := []metav1.OwnerReference{}
	for _, ref := range n.obj.OwnerReferences {
		if !drop[ref.UID] {
			keep = append(keep, ref)
		}
	}
	var v interface{} = keep
	if len(keep) == 0 {
		v = nil
	}
	gc.patchMeta(ctx, n, map[string]interface{}{"ownerReferences": v})
}

func (gc *garbageCollector) removeFinalizer(ctx context.Context, n *gcNode, f string) {
	keep := []string{}
	for _, x := range n.obj.Finalizers {
		if x != f {
			keep = append(keep, x)
		}
	}
	var v interface{} = keep
	if len(keep) == 0 {
		v = nil
	}
	gc.patchMeta(ctx, n, map[string]interface{}{"finalizers": v})
}

func (gc *garbageCollector) orphan(ctx context.Context, owner *gcNode, deps []*gcNode) {
	for _, d := range deps {
		gc.removeOwnerRefs(ctx, d, []types.UID{owner.obj.UID})
	}
	if len(deps) == 0 {
		gc.removeFinalizer(ctx, owner, finalizerOrphan)
	}
}

func (gc *garbageCollector) foreground(ctx context.Context, owner *gcNode, dependents map[types.UID][]*gcNode) {
	blocking := 0
	for _, d := range dependents[owner.obj.UID] {
		for _, ref := range d.obj.OwnerReferences {
			if ref.UID == owner.obj.UID && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
				blocking++
			}
		}
		if d.obj.DeletionTimestamp == nil {
			policy := metav1.DeletePropagationBackground
			if len(dependents[d.obj.UID]) > 0 {
				policy = metav1.DeletePropagationForeground
			}
			gc.delete(ctx, d, policy)
		}
	}
	if blocking == 0 {
		gc.removeFinalizer(ctx, owner, finalizerForeground)
	}
}
