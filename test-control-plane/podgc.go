package main

// The pod garbage collector's orphan rule (kube-controller-manager's PodGC, gcOrphaned,
// reduced). Pods are deleted gracefully (strategy.go): a pod bound to a node stays,
// with deletionTimestamp, until that node's kubelet deletes it with grace period 0. A
// pod bound to a node that does not exist has no kubelet to do that, so this controller
// deletes it with grace period 0. kube's PodGC deletes every pod of a missing node after
// a 40 s quarantine; here only pods that are already being deleted, at once, so pods that
// tests bind to made-up node names stay as they are until deleted.

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

type podGC struct {
	client kubernetes.Interface
	pods   coreinformers.PodInformer
	nodes  coreinformers.NodeInformer
	queue  workqueue.TypedRateLimitingInterface[cache.ObjectName]
}

func newPodGC(client kubernetes.Interface, pods coreinformers.PodInformer, nodes coreinformers.NodeInformer) *podGC {
	c := &podGC{client: client, pods: pods, nodes: nodes,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](50*time.Millisecond, 5*time.Second),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "podgc"})}
	enqueue := func(obj interface{}) {
		if p, ok := obj.(*corev1.Pod); ok && terminatingOnNode(p) {
			c.queue.Add(cache.MetaObjectToName(p))
		}
	}
	_, _ = pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n interface{}) { enqueue(n) },
	})
	_, _ = nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(interface{}) { c.enqueueAll() },
	})
	return c
}

// terminatingOnNode: being deleted gracefully (not yet at grace period 0) and bound to a node.
func terminatingOnNode(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil && p.Spec.NodeName != "" &&
		(p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds > 0)
}

func (c *podGC) enqueueAll() {
	pods, _ := c.pods.Lister().List(labels.Everything())
	for _, p := range pods {
		if terminatingOnNode(p) {
			c.queue.Add(cache.MetaObjectToName(p))
		}
	}
}

func (c *podGC) run(ctx context.Context) {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.Informer().HasSynced, c.nodes.Informer().HasSynced) {
		return
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processNext(ctx) {
		}
	}, time.Second)
	// Safety net for missed events.
	wait.UntilWithContext(ctx, func(context.Context) { c.enqueueAll() }, 5*time.Second)
}

func (c *podGC) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		klog.V(2).InfoS("pod gc will retry", "pod", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *podGC) sync(ctx context.Context, key cache.ObjectName) error {
	pod, err := c.pods.Lister().Pods(key.Namespace).Get(key.Name)
	if errors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !terminatingOnNode(pod) {
		return nil
	}
	if _, err := c.nodes.Lister().Get(pod.Spec.NodeName); err == nil {
		return nil
	}
	// Not in the cache: ask the server before deleting (as kube's PodGC does).
	_, err = c.client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !errors.IsNotFound(err) {
		return err
	}
	zero := int64(0)
	uid := pod.UID
	err = c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !errors.IsNotFound(err) && !errors.IsConflict(err) {
		return err
	}
	klog.V(3).InfoS("pod gc deleted a pod of a missing node", "pod", key, "node", pod.Spec.NodeName)
	return nil
}
