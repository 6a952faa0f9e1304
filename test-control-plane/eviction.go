package main

// pods/eviction and pods/binding, modelled on kube-apiserver's pod registry. Without a
// disruption controller, a PodDisruptionBudget's allowed disruptions are computed at
// eviction time from the Ready pods its selector matches.

import (
	"context"
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

type evictionREST struct{ reg *registry }

var _ rest.NamedCreater = &evictionREST{}
var _ rest.GroupVersionKindProvider = &evictionREST{}

func (r *evictionREST) New() runtime.Object { return &policyv1.Eviction{} }
func (r *evictionREST) Destroy()            {}
func (r *evictionREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return policyv1.SchemeGroupVersion.WithKind("Eviction")
}

func isPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func (r *evictionREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	eviction, ok := obj.(*policyv1.Eviction)
	if !ok {
		return nil, errors.NewBadRequest(fmt.Sprintf("not a Eviction object: %T", obj))
	}
	if name != eviction.Name {
		return nil, errors.NewBadRequest("name in URL does not match name in Eviction object")
	}
	if createValidation != nil {
		if err := createValidation(ctx, eviction.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	pods := r.reg.stores[corev1.Resource("pods")]
	podObj, err := pods.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pod := podObj.(*corev1.Pod)
	deleteOptions := eviction.DeleteOptions
	if deleteOptions == nil {
		deleteOptions = &metav1.DeleteOptions{}
	}
	if deleteOptions.Preconditions == nil {
		deleteOptions.Preconditions = &metav1.Preconditions{UID: &pod.UID}
	}
	if len(options.DryRun) > 0 {
		deleteOptions.DryRun = options.DryRun
	}
	if !isTerminal(pod) && pod.DeletionTimestamp == nil {
		if err := r.checkBudget(ctx, pod); err != nil {
			return nil, err
		}
	}
	if _, _, err := pods.Delete(ctx, name, rest.ValidateAllObjectFunc, deleteOptions); err != nil {
		return nil, err
	}
	return &metav1.Status{Status: metav1.StatusSuccess}, nil
}

func (r *evictionREST) checkBudget(ctx context.Context, pod *corev1.Pod) error {
	pdbObj, err := r.reg.stores[policyv1.Resource("poddisruptionbudgets")].List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return err
	}
	var matching []policyv1.PodDisruptionBudget
	for _, pdb := range pdbObj.(*policyv1.PodDisruptionBudgetList).Items {
		if pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		matching = append(matching, pdb)
	}
	if len(matching) == 0 {
		return nil
	}
	if len(matching) > 1 {
		return errors.NewInternalError(fmt.Errorf("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	}
	pdb := matching[0]
	sel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	podList, err := r.reg.stores[corev1.Resource("pods")].List(ctx, &metainternalversion.ListOptions{LabelSelector: sel})
	if err != nil {
		return err
	}
	expected, healthy := int32(0), int32(0)
	for i := range podList.(*corev1.PodList).Items {
		p := &podList.(*corev1.PodList).Items[i]
		if isTerminal(p) {
			continue
		}
		expected++
		if p.DeletionTimestamp == nil && isPodReady(p) {
			healthy++
		}
	}
	desired := int32(0)
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		n, err := scaledValue(pdb.Spec.MaxUnavailable, expected)
		if err != nil {
			return errors.NewInternalError(err)
		}
		desired = expected - n
		if desired < 0 {
			desired = 0
		}
	case pdb.Spec.MinAvailable != nil:
		n, err := scaledValue(pdb.Spec.MinAvailable, expected)
		if err != nil {
			return errors.NewInternalError(err)
		}
		desired = n
	}
	allowed := healthy - desired
	// An unready pod may go without spending the budget if the budget is healthy
	// (unhealthyPodEvictionPolicy IfHealthyBudget, the default) or always (AlwaysAllow).
	if !isPodReady(pod) {
		if pdb.Spec.UnhealthyPodEvictionPolicy != nil && *pdb.Spec.UnhealthyPodEvictionPolicy == policyv1.AlwaysAllow {
			return nil
		}
		if healthy >= desired && desired > 0 {
			return nil
		}
	}
	if allowed <= 0 {
		err := errors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type:    policyv1.DisruptionBudgetCause,
			Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, desired, healthy),
		})
		return err
	}
	return nil
}

func scaledValue(v *intstr.IntOrString, total int32) (int32, error) {
	if v.Type == intstr.Int {
		return v.IntVal, nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, int(total), true)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return int32(n), nil
}

// --- pods/binding ---

type bindingREST struct{ pods *genericregistry.Store }

var _ rest.NamedCreater = &bindingREST{}

func (r *bindingREST) New() runtime.Object { return &corev1.Binding{} }
func (r *bindingREST) Destroy()            {}

func (r *bindingREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	b, ok := obj.(*corev1.Binding)
	if !ok {
		return nil, errors.NewBadRequest(fmt.Sprintf("not a Binding object: %T", obj))
	}
	if name != b.Name {
		return nil, errors.NewBadRequest("name in URL does not match name in Binding object")
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		return nil, errors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), name, nil)
	}
	if createValidation != nil {
		if err := createValidation(ctx, b.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	_, _, err := r.pods.Update(ctx, name, rest.DefaultUpdatedObjectInfo(nil, func(ctx context.Context, newObj, oldObj runtime.Object) (runtime.Object, error) {
		pod := oldObj.DeepCopyObject().(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, errors.NewConflict(corev1.Resource("pods/binding"), name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
		}
		if pod.Spec.NodeName != "" {
			return nil, errors.NewConflict(corev1.Resource("pods/binding"), name, fmt.Errorf("pod %v is already assigned to node %q", name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		return pod, nil
	}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{DryRun: options.DryRun})
	if err != nil {
		return nil, err
	}
	return &metav1.Status{Status: metav1.StatusSuccess}, nil
}
