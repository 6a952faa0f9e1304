package main

// The namespace controller (kube-controller-manager's job, reimplemented small): for a
// namespace being deleted, delete everything in it (every namespaced resource found
// through discovery, built-in and custom), report progress in status.conditions, and
// once it is empty remove the "kubernetes" finalizer and delete the namespace.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

type namespaceController struct {
	client kubernetes.Interface
	meta   metadata.Interface
	nsInf  coreinformers.NamespaceInformer
	queue  workqueue.TypedRateLimitingInterface[string]
}

func newNamespaceController(client kubernetes.Interface, meta metadata.Interface, nsInf coreinformers.NamespaceInformer) *namespaceController {
	c := &namespaceController{client: client, meta: meta, nsInf: nsInf,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 2*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"})}
	enqueue := func(obj interface{}) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	_, _ = nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n interface{}) { enqueue(n) },
	})
	return c
}

func (c *namespaceController) run(ctx context.Context) {
	defer c.queue.ShutDown()
	for i := 0; i < 2; i++ {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.processNext(ctx) {
			}
		}, time.Second)
	}
	// Safety net for missed events.
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, obj := range c.nsInf.Informer().GetStore().List() {
			enqueue := obj.(*corev1.Namespace)
			if enqueue.DeletionTimestamp != nil {
				c.queue.Add(enqueue.Name)
			}
		}
	}, 5*time.Second)
}

func (c *namespaceController) processNext(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	requeue, err := c.sync(ctx, name)
	switch {
	case err != nil:
		klog.V(2).InfoS("namespace deletion will be retried", "namespace", name, "err", err)
		c.queue.AddRateLimited(name)
	case requeue:
		c.queue.AddAfter(name, 200*time.Millisecond)
	default:
		c.queue.Forget(name)
	}
	return true
}

func hasString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sync returns requeue=true while content remains.
func (c *namespaceController) sync(ctx context.Context, name string) (bool, error) {
	ns, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if errors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ns.DeletionTimestamp == nil {
		return false, nil
	}
	if !hasString(finalizerStrings(ns.Spec.Finalizers), string(corev1.FinalizerKubernetes)) {
		return false, c.deleteNamespace(ctx, ns)
	}
	resources, err := namespacedDeletableResources(c.client.Discovery())
	if err != nil && len(resources) == 0 {
		return false, err
	}
	remaining := map[string]int{}      // "pods." (resource.group) -> count
	finalizersLeft := map[string]int{} // finalizer -> count
	for _, gvr := range resources {
		res := c.meta.Resource(gvr).Namespace(name)
		bg := metav1.DeletePropagationBackground
		if err := res.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}); err != nil &&
			!errors.IsNotFound(err) && !errors.IsMethodNotSupported(err) {
			klog.V(2).InfoS("deletecollection failed", "namespace", name, "resource", gvr, "err", err)
		}
		list, err := res.List(ctx, metav1.ListOptions{})
		if err != nil {
			if errors.IsNotFound(err) || errors.IsMethodNotSupported(err) {
				continue
			}
			return false, err
		}
		for _, item := range list.Items {
			if item.DeletionTimestamp == nil {
				// deletecollection is not supported or raced with a create: delete one by one
				_ = res.Delete(ctx, item.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
			}
			remaining[gvr.Resource+"."+gvr.Group]++
			for _, f := range item.Finalizers {
				finalizersLeft[f]++
			}
		}
	}
	if err := c.setConditions(ctx, ns, remaining, finalizersLeft); err != nil && !errors.IsConflict(err) {
		klog.V(2).InfoS("updating namespace conditions", "namespace", name, "err", err)
	}
	if len(remaining) > 0 {
		return true, nil
	}
	// Empty: remove our finalizer, then delete.
	ns, err = c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if errors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	var keep []corev1.FinalizerName
	for _, f := range ns.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			keep = append(keep, f)
		}
	}
	ns.Spec.Finalizers = keep
	ns, err = c.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
	if err != nil {
		if errors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return false, c.deleteNamespace(ctx, ns)
}

func finalizerStrings(fs []corev1.FinalizerName) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

func (c *namespaceController) deleteNamespace(ctx context.Context, ns *corev1.Namespace) error {
	if len(ns.Spec.Finalizers) != 0 {
		return nil
	}
	bg := metav1.DeletePropagationBackground
	err := c.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &ns.UID}, PropagationPolicy: &bg})
	if errors.IsNotFound(err) || errors.IsConflict(err) {
		return nil
	}
	return err
}

func (c *namespaceController) setConditions(ctx context.Context, ns *corev1.Namespace, remaining, finalizers map[string]int) error {
	now := metav1.Now()
	cond := func(t corev1.NamespaceConditionType, ok bool, reason, msg string) corev1.NamespaceCondition {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		return corev1.NamespaceCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: now}
	}
	contentMsg, finMsg := "", ""
	if len(remaining) > 0 {
		var parts []string
		for _, k := range sortedKeys(remaining) {
			parts = append(parts, fmt.Sprintf("%s has %d resource instances", k, remaining[k]))
		}
		contentMsg = "Some resources are remaining: " + strings.Join(parts, ", ")
	}
	if len(finalizers) > 0 {
		var parts []string
		for _, k := range sortedKeys(finalizers) {
			parts = append(parts, fmt.Sprintf("%s in %d resource instances", k, finalizers[k]))
		}
		finMsg = "Some content in the namespace has finalizers remaining: " + strings.Join(parts, ", ")
	}
	want := []corev1.NamespaceCondition{
		cond(corev1.NamespaceDeletionDiscoveryFailure, false, "ResourcesDiscovered", "All resources successfully discovered"),
		cond(corev1.NamespaceDeletionGVParsingFailure, false, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
		cond(corev1.NamespaceDeletionContentFailure, false, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
		cond(corev1.NamespaceContentRemaining, len(remaining) > 0, map[bool]string{true: "SomeResourcesRemain", false: "ContentRemoved"}[len(remaining) > 0],
			map[bool]string{true: contentMsg, false: "All content successfully removed"}[len(remaining) > 0]),
		cond(corev1.NamespaceFinalizersRemaining, len(finalizers) > 0, map[bool]string{true: "SomeFinalizersRemain", false: "ContentHasNoFinalizers"}[len(finalizers) > 0],
			map[bool]string{true: finMsg, false: "All content-preserving finalizers finished"}[len(finalizers) > 0]),
	}
	changed := len(ns.Status.Conditions) != len(want)
	for i := range want {
		if changed {
			break
		}
		o := ns.Status.Conditions[i]
		if o.Type != want[i].Type || o.Status != want[i].Status || o.Message != want[i].Message {
			changed = true
		} else {
			want[i].LastTransitionTime = o.LastTransitionTime
		}
	}
	if !changed {
		return nil
	}
	ns = ns.DeepCopy()
	ns.Status.Conditions = want
	_, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{})
	return err
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// namespacedDeletableResources lists the preferred version of every namespaced
// resource that supports list and delete (not subresources).
func namespacedDeletableResources(d discovery.DiscoveryInterface) ([]schema.GroupVersionResource, error) {
	lists, err := d.ServerPreferredNamespacedResources()
	var out []schema.GroupVersionResource
	seen := sets.New[schema.GroupResource]()
	for _, l := range lists {
		gv, perr := schema.ParseGroupVersion(l.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasString(r.Verbs, "list") || !hasString(r.Verbs, "delete") {
				continue
			}
			gr := schema.GroupResource{Group: gv.Group, Resource: r.Name}
			if gr == (schema.GroupResource{Group: "events.k8s.io", Resource: "events"}) || seen.Has(gr) {
				continue // same storage as core/v1 events
			}
			seen.Insert(gr)
			out = append(out, gv.WithResource(r.Name))
		}
	}
	if err != nil {
		utilruntime.HandleError(err)
	}
	return out, err
}
