package main

// Namespaces, modelled on kube-apiserver's namespace registry: creation adds the
// "kubernetes" finalizer to spec.finalizers; the first DELETE only marks the namespace
// Terminating (deletionTimestamp + status.phase); the namespace controller
// (namespace_controller.go) empties it and removes the finalizer through the
// namespaces/finalize subresource, and a later DELETE removes it.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	storeerr "k8s.io/apiserver/pkg/storage/errors"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

func prepareNamespaceCreate(ctx context.Context, obj runtime.Object) {
	ns := obj.(*corev1.Namespace)
	ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	has := false
	for _, f := range ns.Spec.Finalizers {
		if f == corev1.FinalizerKubernetes {
			has = true
		}
	}
	if !has {
		ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
	}
}

// spec.finalizers only change through namespaces/finalize, status only through /status.
func prepareNamespaceUpdate(ctx context.Context, obj, old runtime.Object) {
	ns, oldNs := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Spec.Finalizers = oldNs.Spec.Finalizers
	ns.Status = oldNs.Status
}

type namespaceFinalizeStrategy struct{ *strategy }

func (namespaceFinalizeStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	ns, oldNs := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	finalizers := ns.Spec.Finalizers
	*ns = *oldNs.DeepCopy()
	ns.Spec.Finalizers = finalizers
}

func (s namespaceFinalizeStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{"v1": fieldpath.NewSet(fieldpath.MakePathOrDie("status"))}
}

type namespaceStatusStrategy struct{ statusStrategy }

func (namespaceStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	ns, oldNs := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Spec = oldNs.Spec
}

// shouldDeleteNamespaceDuringUpdate: removing the last metadata finalizer deletes the
// namespace only once spec.finalizers is empty too.
func shouldDeleteNamespaceDuringUpdate(ctx context.Context, key string, obj, existing runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return false
	}
	return len(ns.Spec.Finalizers) == 0 && genericregistry.ShouldDeleteDuringUpdate(ctx, key, obj, existing)
}

type namespaceREST struct {
	store *genericregistry.Store
	def   *resourceDef
}

func (reg *registry) namespaceStorage(def *resourceDef, store *genericregistry.Store) map[string]rest.Storage {
	store.ShouldDeleteDuringUpdate = shouldDeleteNamespaceDuringUpdate
	statusStore := *store
	ss := namespaceStatusStrategy{statusStrategy{newStrategy(def)}}
	statusStore.UpdateStrategy, statusStore.ResetFieldsStrategy = ss, ss
	finalizeStore := *store
	fs := namespaceFinalizeStrategy{newStrategy(def)}
	finalizeStore.UpdateStrategy, finalizeStore.ResetFieldsStrategy = fs, fs
	return map[string]rest.Storage{
		"namespaces":          &namespaceREST{store: store, def: def},
		"namespaces/status":   &statusREST{store: &statusStore},
		"namespaces/finalize": &statusREST{store: &finalizeStore},
	}
}

func (r *namespaceREST) New() runtime.Object                    { return r.store.New() }
func (r *namespaceREST) NewList() runtime.Object                { return r.store.NewList() }
func (r *namespaceREST) Destroy()                               { r.store.Destroy() }
func (r *namespaceREST) NamespaceScoped() bool                  { return false }
func (r *namespaceREST) GetSingularName() string                { return "namespace" }
func (r *namespaceREST) ShortNames() []string                   { return []string{"ns"} }
func (r *namespaceREST) StorageVersion() runtime.GroupVersioner { return r.store.StorageVersion() }
func (r *namespaceREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}
func (r *namespaceREST) Create(ctx context.Context, obj runtime.Object, v rest.ValidateObjectFunc, o *metav1.CreateOptions) (runtime.Object, error) {
	return r.store.Create(ctx, obj, v, o)
}
func (r *namespaceREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, cv rest.ValidateObjectFunc,
	uv rest.ValidateObjectUpdateFunc, force bool, o *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, cv, uv, force, o)
}
func (r *namespaceREST) Get(ctx context.Context, name string, o *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, o)
}
func (r *namespaceREST) List(ctx context.Context, o *metainternalversion.ListOptions) (runtime.Object, error) {
	return r.store.List(ctx, o)
}
func (r *namespaceREST) Watch(ctx context.Context, o *metainternalversion.ListOptions) (watch.Interface, error) {
	return r.store.Watch(ctx, o)
}
func (r *namespaceREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, obj, opts)
}

// Delete: the first request marks the namespace Terminating; once spec.finalizers is
// empty, a request deletes it.
func (r *namespaceREST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	nsObj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	namespace := nsObj.(*corev1.Namespace)
	if options == nil {
		options = metav1.NewDeleteOptions(0)
	}
	if options.Preconditions == nil {
		options.Preconditions = &metav1.Preconditions{}
	}
	if options.Preconditions.UID == nil {
		options.Preconditions.UID = &namespace.UID
	} else if *options.Preconditions.UID != namespace.UID {
		return nil, false, errors.NewConflict(corev1.Resource("namespaces"), name,
			errNamespaceUIDMismatch(*options.Preconditions.UID, namespace.UID))
	}
	if namespace.DeletionTimestamp.IsZero() {
		key, err := r.store.KeyFunc(ctx, name)
		if err != nil {
			return nil, false, err
		}
		preconditions := storage.Preconditions{UID: options.Preconditions.UID, ResourceVersion: options.Preconditions.ResourceVersion}
		out := r.store.NewFunc()
		err = r.store.Storage.GuaranteedUpdate(ctx, key, out, false, &preconditions,
			storage.SimpleUpdate(func(existing runtime.Object) (runtime.Object, error) {
				ns := existing.(*corev1.Namespace)
				if ns.DeletionTimestamp != nil {
					return ns, nil
				}
				if deleteValidation != nil {
					if err := deleteValidation(ctx, ns); err != nil {
						return nil, err
					}
				}
				now := metav1.Now()
				ns.DeletionTimestamp = &now
				ns.Status.Phase = corev1.NamespaceTerminating
				return ns, nil
			}), len(options.DryRun) > 0, nil)
		if err != nil {
			return nil, false, storeerr.InterpretUpdateError(err, corev1.Resource("namespaces"), name)
		}
		return out, false, nil
	}
	if len(namespace.Spec.Finalizers) != 0 {
		return namespace, false, nil
	}
	return r.store.Delete(ctx, name, deleteValidation, options)
}

func errNamespaceUIDMismatch(precondition, actual types.UID) error {
	return fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", precondition, actual)
}
