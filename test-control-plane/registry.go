package main

// Registry: one genericregistry.Store per built-in resource, plus the /status and
// /scale subresources, installed into the core GenericAPIServer.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// registry holds what the controllers and subresources need to reach the stores.
type registry struct {
	stores   map[schema.GroupResource]*genericregistry.Store
	services *serviceAllocator
	authz    *denyAuthorizer
	// authn and apiAudiences answer TokenReviews (tokens.go).
	authn        authenticator.Request
	apiAudiences authenticator.Audiences
	// tokens is DIR/tokens.csv, where serviceaccounts/token mints (tokenrequest.go).
	tokens *tokenStore
	// podLogDir holds the container logs that pods/log serves (--pod-log-dir).
	podLogDir string
}

// resourceREST adds short names and categories to a store.
type resourceREST struct {
	*genericregistry.Store
	def *resourceDef
}

func (r *resourceREST) ShortNames() []string { return r.def.shortNames }
func (r *resourceREST) Categories() []string { return r.def.categories }

func newStore(def *resourceDef, getter generic.RESTOptionsGetter) (*genericregistry.Store, error) {
	st := newStrategy(def)
	store := &genericregistry.Store{
		NewFunc:                   def.newObj,
		NewListFunc:               def.newList,
		DefaultQualifiedResource:  def.gr(),
		SingularQualifiedResource: schema.GroupResource{Group: def.group, Resource: strings.ToLower(def.kind)},
		CreateStrategy:            st,
		UpdateStrategy:            st,
		DeleteStrategy:            st,
		ResetFieldsStrategy:       st,
		TableConvertor:            newTableConvertor(def),
	}
	if def.checkGracefulDelete != nil {
		store.DeleteStrategy = gracefulStrategy{st}
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: getter, AttrFunc: attrFunc(def)}); err != nil {
		return nil, fmt.Errorf("store for %s: %w", def.gr(), err)
	}
	return store, nil
}

// buildStorage returns the storage map entries ("deployments", "deployments/status", ...)
// of one resource.
func (reg *registry) buildStorage(def *resourceDef, getter generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	store, err := newStore(def, getter)
	if err != nil {
		return nil, err
	}
	reg.stores[def.gr()] = store
	out := map[string]rest.Storage{}
	switch def.gr() {
	case schema.GroupResource{Resource: "namespaces"}:
		return reg.namespaceStorage(def, store), nil
	case schema.GroupResource{Resource: "services"}:
		store.BeginCreate = reg.services.beginCreate
		store.BeginUpdate = reg.services.beginUpdate
		store.AfterDelete = reg.services.afterDelete
	case schema.GroupResource{Resource: "serviceaccounts"}:
		out["serviceaccounts/token"] = &tokenRequestREST{serviceAccounts: store, tokens: reg.tokens, apiAudiences: reg.apiAudiences}
	case schema.GroupResource{Resource: "pods"}:
		out["pods/eviction"] = &evictionREST{reg: reg}
		out["pods/binding"] = &bindingREST{pods: store}
		out["pods/log"] = &podLogREST{pods: store, dir: reg.podLogDir}
	}
	out[def.resource] = &resourceREST{Store: store, def: def}
	if def.status {
		out[def.resource+"/status"] = newStatusREST(store, def)
	}
	if def.scale {
		out[def.resource+"/scale"] = &scaleREST{store: store, def: def}
	}
	return out, nil
}

// --- /status ---

type statusREST struct{ store *genericregistry.Store }

func newStatusREST(store *genericregistry.Store, def *resourceDef) *statusREST {
	s := *store
	ss := statusStrategy{newStrategy(def)}
	s.UpdateStrategy = ss
	s.ResetFieldsStrategy = ss
	s.BeginCreate, s.BeginUpdate = nil, nil
	return &statusREST{store: &s}
}

func (r *statusREST) New() runtime.Object { return r.store.New() }
func (r *statusREST) Destroy()            {}
func (r *statusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// subresources never create on update
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *statusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}
func (r *statusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

// --- /scale (autoscaling/v1 Scale) for deployments, statefulsets, replicasets ---

type scaleREST struct {
	store *genericregistry.Store
	def   *resourceDef
}

var _ rest.GroupVersionKindProvider = &scaleREST{}

func (r *scaleREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return autoscalingv1.SchemeGroupVersion.WithKind("Scale")
}
func (r *scaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }
func (r *scaleREST) Destroy()            {}

func (r *scaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	return scaleOf(obj)
}

func (r *scaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	obj, _, err := r.store.Update(ctx, name, &scaleUpdatedObjectInfo{name: name, reqObjInfo: objInfo, def: r.def},
		toScaleCreateValidation(createValidation), toScaleUpdateValidation(updateValidation), false, options)
	if err != nil {
		return nil, false, err
	}
	s, err := scaleOf(obj)
	return s, false, err
}

func (r *scaleREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return rest.NewDefaultTableConvertor(r.def.gr()).ConvertToTable(ctx, object, tableOptions)
}

func toScaleCreateValidation(f rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	return func(ctx context.Context, obj runtime.Object) error {
		s, err := scaleOf(obj)
		if err != nil {
			return err
		}
		return f(ctx, s)
	}
}

func toScaleUpdateValidation(f rest.ValidateObjectUpdateFunc) rest.ValidateObjectUpdateFunc {
	return func(ctx context.Context, obj, old runtime.Object) error {
		n, err := scaleOf(obj)
		if err != nil {
			return err
		}
		o, err := scaleOf(old)
		if err != nil {
			return err
		}
		return f(ctx, n, o)
	}
}

func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	var om metav1.ObjectMeta
	var replicas, statusReplicas int32
	var selector *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		om, selector, statusReplicas = o.ObjectMeta, o.Spec.Selector, o.Status.Replicas
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
	case *appsv1.StatefulSet:
		om, selector, statusReplicas = o.ObjectMeta, o.Spec.Selector, o.Status.Replicas
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
	case *appsv1.ReplicaSet:
		om, selector, statusReplicas = o.ObjectMeta, o.Spec.Selector, o.Status.Replicas
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
	default:
		return nil, errors.NewBadRequest(fmt.Sprintf("%T has no scale subresource", obj))
	}
	sel := ""
	if selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(selector); err == nil {
			sel = s.String()
		}
	}
	return &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: om.Name, Namespace: om.Namespace, UID: om.UID,
			ResourceVersion: om.ResourceVersion, CreationTimestamp: om.CreationTimestamp},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas},
		Status: autoscalingv1.ScaleStatus{Replicas: statusReplicas, Selector: sel},
	}, nil
}

func setReplicas(obj runtime.Object, n int32) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
	case *appsv1.StatefulSet:
		o.Spec.Replicas = &n
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
	}
}

// scaleUpdatedObjectInfo turns a Scale update into an update of the parent object.
type scaleUpdatedObjectInfo struct {
	name       string
	reqObjInfo rest.UpdatedObjectInfo
	def        *resourceDef
}

func (i *scaleUpdatedObjectInfo) Preconditions() *metav1.Preconditions {
	return i.reqObjInfo.Preconditions()
}

func (i *scaleUpdatedObjectInfo) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	if oldObj == nil {
		return nil, errors.NewNotFound(i.def.gr(), i.name)
	}
	obj := oldObj.DeepCopyObject()
	oldScale, err := scaleOf(obj)
	if err != nil {
		return nil, err
	}
	newScaleObj, err := i.reqObjInfo.UpdatedObject(ctx, oldScale)
	if err != nil {
		return nil, err
	}
	newScale, ok := newScaleObj.(*autoscalingv1.Scale)
	if !ok {
		return nil, errors.NewBadRequest(fmt.Sprintf("expected input object type to be Scale, but %T", newScaleObj))
	}
	if newScale.Spec.Replicas < 0 {
		return nil, errors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, i.name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "replicas"), newScale.Spec.Replicas, "must be greater than or equal to 0")})
	}
	setReplicas(obj, newScale.Spec.Replicas)
	// A resourceVersion in the Scale is a precondition on the parent object.
	if newScale.ResourceVersion != "" {
		m := obj.(metav1.Object)
		m.SetResourceVersion(newScale.ResourceVersion)
	}
	return obj, nil
}

var groupOrder = []string{"", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
	"networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io",
	"coordination.k8s.io", "discovery.k8s.io"}

func groupRank(g string) int {
	for i, x := range groupOrder {
		if x == g {
			return i
		}
	}
	return len(groupOrder)
}

// installBuiltins installs every built-in API group into the core server.
func (reg *registry) installBuiltins(s *genericapiserver.GenericAPIServer, getter generic.RESTOptionsGetter) error {
	infos := map[string]*genericapiserver.APIGroupInfo{}
	order := []string{}
	info := func(group string) *genericapiserver.APIGroupInfo {
		if i, ok := infos[group]; ok {
			return i
		}
		i := genericapiserver.NewDefaultAPIGroupInfo(group, Scheme, metav1.ParameterCodec, Codecs)
		if group == "" {
			// pods/log decodes PodLogOptions from the query (as kube-apiserver's legacy scheme does).
			i.ParameterCodec = runtime.NewParameterCodec(Scheme)
		}
		infos[group] = &i
		order = append(order, group)
		return &i
	}
	add := func(group, version string, m map[string]rest.Storage) {
		i := info(group)
		if i.VersionedResourcesStorageMap[version] == nil {
			i.VersionedResourcesStorageMap[version] = map[string]rest.Storage{}
		}
		for k, v := range m {
			i.VersionedResourcesStorageMap[version][k] = v
		}
	}
	for _, def := range resourceTable() {
		m, err := reg.buildStorage(def, getter)
		if err != nil {
			return err
		}
		for _, v := range append([]string{def.version}, def.alsoVersions...) {
			add(def.group, v, m)
		}
		if def.group == "" && def.resource == "events" {
			// events.k8s.io/v1 serves the same stored objects (converted).
			add("events.k8s.io", "v1", map[string]rest.Storage{"events": m["events"]})
		}
	}
	add("authorization.k8s.io", "v1", map[string]rest.Storage{
		"selfsubjectaccessreviews":  &accessReviewREST{authz: reg.authz, kind: "SelfSubjectAccessReview"},
		"subjectaccessreviews":      &accessReviewREST{authz: reg.authz, kind: "SubjectAccessReview"},
		"localsubjectaccessreviews": &accessReviewREST{authz: reg.authz, kind: "LocalSubjectAccessReview"},
		"selfsubjectrulesreviews":   &rulesReviewREST{},
	})
	add("authentication.k8s.io", "v1", map[string]rest.Storage{
		"selfsubjectreviews": &selfSubjectReviewREST{},
		"tokenreviews":       &tokenReviewREST{authn: reg.authn, apiAudiences: reg.apiAudiences},
	})

	if err := s.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, infos[""]); err != nil {
		return fmt.Errorf("installing core/v1: %w", err)
	}
	// kube-apiserver's order of groups in discovery
	sort.SliceStable(order, func(i, j int) bool { return groupRank(order[i]) < groupRank(order[j]) })
	var groups []*genericapiserver.APIGroupInfo
	for _, g := range order {
		if g != "" {
			groups = append(groups, infos[g])
		}
	}
	if err := s.InstallAPIGroups(groups...); err != nil {
		return fmt.Errorf("installing API groups: %w", err)
	}
	return nil
}
