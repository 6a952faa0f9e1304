package main

// One registry strategy shared by all built-in resources (parameterised by the
// resourceDef), modelled on the per-type strategies of kube-apiserver: status is reset
// on create and ignored on the main resource, spec is ignored on /status, generation
// follows spec changes, the type-specific validation of validation.go runs, and pods
// are deleted gracefully.

import (
	"context"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	def *resourceDef
}

func newStrategy(def *resourceDef) *strategy {
	return &strategy{ObjectTyper: Scheme, NameGenerator: names.SimpleNameGenerator, def: def}
}

func (s *strategy) NamespaceScoped() bool           { return s.def.namespaced }
func (s *strategy) AllowCreateOnUpdate() bool       { return s.def.createOnUpdate }
func (s *strategy) AllowUnconditionalUpdate() bool  { return true }
func (s *strategy) Canonicalize(obj runtime.Object) {}

func (s *strategy) DefaultGarbageCollectionPolicy(ctx context.Context) rest.GarbageCollectionPolicy {
	return s.def.gcPolicy
}

// GetResetFields: on the main resource a client cannot set status.
func (s *strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.def.status {
		return nil
	}
	set := fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
	out := map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(s.def.gv().String()): set}
	for _, v := range s.def.alsoVersions {
		out[fieldpath.APIVersion(s.def.group+"/"+v)] = set
	}
	return out
}

func (s *strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	if s.def.status {
		if s.def.resetStatus != nil {
			s.def.resetStatus(obj)
		} else {
			setStatus(obj, reflect.Value{})
		}
	}
	if s.def.generation {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetGeneration(1)
		}
	}
	if s.def.prepareCreate != nil {
		s.def.prepareCreate(ctx, obj)
	}
}

func (s *strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	if s.def.status {
		setStatus(obj, statusOf(old))
	}
	if s.def.generation {
		newMeta, _ := meta.Accessor(obj)
		oldMeta, _ := meta.Accessor(old)
		if specChanged(obj, old) {
			newMeta.SetGeneration(oldMeta.GetGeneration() + 1)
		} else {
			newMeta.SetGeneration(oldMeta.GetGeneration())
		}
	}
	if s.def.prepareUpdate != nil {
		s.def.prepareUpdate(ctx, obj, old)
	}
}

func (s *strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessor(m, s.def.namespaced, s.def.nameFn, field.NewPath("metadata"))
	if s.def.validate != nil {
		errs = append(errs, s.def.validate(obj)...)
	}
	return errs
}

func (s *strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	newMeta, err1 := meta.Accessor(obj)
	oldMeta, err2 := meta.Accessor(old)
	if err1 != nil || err2 != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err1)}
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(newMeta, oldMeta, field.NewPath("metadata"))
	if s.def.validate != nil {
		errs = append(errs, s.def.validate(obj)...)
	}
	if s.def.validateUpdate != nil {
		errs = append(errs, s.def.validateUpdate(obj, old)...)
	}
	return errs
}

func (s *strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }
func (s *strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// gracefulStrategy is the delete strategy of a resource with graceful deletion
// (resourceDef.checkGracefulDelete): the generic registry then sets deletionTimestamp
// and deletionGracePeriodSeconds instead of removing the object, and a later DELETE may
// only shorten the grace period (rest.BeforeDelete).
type gracefulStrategy struct{ *strategy }

var _ rest.RESTGracefulDeleteStrategy = gracefulStrategy{}

func (s gracefulStrategy) CheckGracefulDelete(ctx context.Context, obj runtime.Object, options *metav1.DeleteOptions) bool {
	return s.def.checkGracefulDelete(ctx, obj, options)
}

// checkPodGracefulDelete is kube-apiserver's pod rule (pkg/registry/core/pod/strategy.go):
// the grace period is the DELETE's gracePeriodSeconds, else the pod's
// terminationGracePeriodSeconds (defaulted to 30), else 0; it is 0 for a pod not bound to
// a node or in a terminal phase (Succeeded, Failed), and 1 if negative. A period of 0
// deletes the pod at once; otherwise it stays until its kubelet deletes it with
// gracePeriodSeconds 0 once the containers have stopped.
func checkPodGracefulDelete(ctx context.Context, obj runtime.Object, options *metav1.DeleteOptions) bool {
	if options == nil {
		return false
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	period := int64(0)
	if options.GracePeriodSeconds != nil {
		period = *options.GracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		period = *pod.Spec.TerminationGracePeriodSeconds
	}
	// not scheduled: nothing runs it, delete at once
	if pod.Spec.NodeName == "" {
		period = 0
	}
	// already terminated: delete at once
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		period = 0
	}
	if period < 0 {
		period = 1
	}
	options.GracePeriodSeconds = &period
	return true
}

// statusStrategy serves /status: only status (and metadata) may change.
type statusStrategy struct{ *strategy }

func (s statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	set := fieldpath.NewSet(fieldpath.MakePathOrDie("spec"))
	out := map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(s.def.gv().String()): set}
	for _, v := range s.def.alsoVersions {
		out[fieldpath.APIVersion(s.def.group+"/"+v)] = set
	}
	return out
}

func (s statusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	copyAllButStatus(obj, old)
	if s.def.generation {
		newMeta, _ := meta.Accessor(obj)
		oldMeta, _ := meta.Accessor(old)
		newMeta.SetGeneration(oldMeta.GetGeneration())
	}
}

func (s statusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	newMeta, _ := meta.Accessor(obj)
	oldMeta, _ := meta.Accessor(old)
	return apimachineryvalidation.ValidateObjectMetaAccessorUpdate(newMeta, oldMeta, field.NewPath("metadata"))
}

// --- reflection helpers over the common shape {TypeMeta, ObjectMeta, Spec..., Status} ---

func statusOf(obj runtime.Object) reflect.Value {
	v := reflect.ValueOf(obj).Elem().FieldByName("Status")
	if !v.IsValid() {
		return reflect.Value{}
	}
	return v
}

// setStatus sets obj.Status to a copy of val (the zero value if val is invalid).
func setStatus(obj runtime.Object, val reflect.Value) {
	f := reflect.ValueOf(obj).Elem().FieldByName("Status")
	if !f.IsValid() || !f.CanSet() {
		return
	}
	if !val.IsValid() {
		f.Set(reflect.Zero(f.Type()))
		return
	}
	f.Set(val)
}

// copyAllButStatus copies every top-level field except TypeMeta, ObjectMeta and Status
// from old into obj.
func copyAllButStatus(obj, old runtime.Object) {
	nv := reflect.ValueOf(obj).Elem()
	ov := reflect.ValueOf(old).Elem()
	for i := 0; i < nv.NumField(); i++ {
		switch nv.Type().Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		nv.Field(i).Set(ov.Field(i))
	}
}

// specChanged reports whether anything but TypeMeta, ObjectMeta and Status differs.
func specChanged(obj, old runtime.Object) bool {
	nv := reflect.ValueOf(obj).Elem()
	ov := reflect.ValueOf(old).Elem()
	for i := 0; i < nv.NumField(); i++ {
		switch nv.Type().Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !apiequality.Semantic.DeepEqual(nv.Field(i).Interface(), ov.Field(i).Interface()) {
			return true
		}
	}
	return false
}
