package main

// The runtime.Scheme of the built-in types.
//
// Debian does not package k8s.io/kubernetes, so there are no internal API types. Each
// k8s.io/api type is registered both as group/vN and as group/__internal: the external
// type is its own hub, with an identity conversion. Two exceptions are real hubs with
// real conversions, because the same stored object is served in two shapes:
// autoscaling/v2 HorizontalPodAutoscaler (also served as autoscaling/v1) and core/v1
// Event (also served as events.k8s.io/v1).

import (
	"net/url"
	"reflect"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

var (
	// Scheme holds external and "internal" (same Go type) registrations.
	Scheme = runtime.NewScheme()
	// Codecs serves and stores the built-in types.
	Codecs = serializer.NewCodecFactory(Scheme)
	// externalScheme holds only the external types; it names OpenAPI definitions.
	externalScheme = runtime.NewScheme()
)

var addToSchemes = []func(*runtime.Scheme) error{
	corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme,
	coordinationv1.AddToScheme, discoveryv1.AddToScheme, eventsv1.AddToScheme, policyv1.AddToScheme,
	autoscalingv1.AddToScheme, autoscalingv2.AddToScheme, storagev1.AddToScheme, rbacv1.AddToScheme,
	admissionregistrationv1.AddToScheme, authorizationv1.AddToScheme, authenticationv1.AddToScheme,
}

func internalGV(group string) schema.GroupVersion {
	return schema.GroupVersion{Group: group, Version: runtime.APIVersionInternal}
}

// setupScheme registers every type of the resource table (and the few non-resource
// kinds the subresources use) and our defaulting functions. It runs once, from main.
func setupScheme() {
	for _, add := range addToSchemes {
		utilruntime.Must(add(Scheme))
		utilruntime.Must(add(externalScheme))
	}
	// Options, Status and discovery types on the empty group's v1, as kube-apiserver does.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{},
		&metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})

	hubs := map[reflect.Type]bool{}
	addInternal := func(group, kind string, obj runtime.Object) {
		Scheme.AddKnownTypeWithName(internalGV(group).WithKind(kind), obj)
		t := reflect.TypeOf(obj)
		if !hubs[t] {
			hubs[t] = true
			utilruntime.Must(Scheme.AddConversionFunc(obj, obj, identityConversion))
		}
	}
	for _, def := range resourceTable() {
		addInternal(def.group, def.kind, def.newObj())
		if def.newList != nil {
			addInternal(def.group, def.kind+"List", def.newList())
		}
	}
	// Kinds of subresources and create-only resources.
	addInternal("autoscaling", "Scale", &autoscalingv1.Scale{})
	addInternal("policy", "Eviction", &policyv1.Eviction{})
	addInternal("", "Binding", &corev1.Binding{})
	addInternal("authorization.k8s.io", "SelfSubjectAccessReview", &authorizationv1.SelfSubjectAccessReview{})
	addInternal("authorization.k8s.io", "SubjectAccessReview", &authorizationv1.SubjectAccessReview{})
	addInternal("authorization.k8s.io", "LocalSubjectAccessReview", &authorizationv1.LocalSubjectAccessReview{})
	addInternal("authorization.k8s.io", "SelfSubjectRulesReview", &authorizationv1.SelfSubjectRulesReview{})
	addInternal("authentication.k8s.io", "SelfSubjectReview", &authenticationv1.SelfSubjectReview{})
	addInternal("authentication.k8s.io", "TokenReview", &authenticationv1.TokenReview{})
	addInternal("authentication.k8s.io", "TokenRequest", &authenticationv1.TokenRequest{})
	// events.k8s.io/v1 is served from the core/v1 Event store (as in kube-apiserver).
	addInternal("events.k8s.io", "Event", &corev1.Event{})
	addInternal("events.k8s.io", "EventList", &corev1.EventList{})
	// pods/log options come from the query string.
	utilruntime.Must(Scheme.AddConversionFunc((*url.Values)(nil), (*corev1.PodLogOptions)(nil), podLogOptionsFromQuery))
	// The autoscaling/v1 HPA is converted from/to the v2 hub.
	utilruntime.Must(Scheme.AddConversionFunc((*autoscalingv1.HorizontalPodAutoscaler)(nil), (*autoscalingv2.HorizontalPodAutoscaler)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			hpaV1ToV2(a.(*autoscalingv1.HorizontalPodAutoscaler), b.(*autoscalingv2.HorizontalPodAutoscaler))
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*autoscalingv2.HorizontalPodAutoscaler)(nil), (*autoscalingv1.HorizontalPodAutoscaler)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			hpaV2ToV1(a.(*autoscalingv2.HorizontalPodAutoscaler), b.(*autoscalingv1.HorizontalPodAutoscaler))
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*autoscalingv2.HorizontalPodAutoscalerList)(nil), (*autoscalingv1.HorizontalPodAutoscalerList)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*autoscalingv2.HorizontalPodAutoscalerList), b.(*autoscalingv1.HorizontalPodAutoscalerList)
			out.ListMeta = in.ListMeta
			out.Items = make([]autoscalingv1.HorizontalPodAutoscaler, len(in.Items))
			for i := range in.Items {
				hpaV2ToV1(&in.Items[i], &out.Items[i])
			}
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*autoscalingv1.HorizontalPodAutoscalerList)(nil), (*autoscalingv2.HorizontalPodAutoscalerList)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*autoscalingv1.HorizontalPodAutoscalerList), b.(*autoscalingv2.HorizontalPodAutoscalerList)
			out.ListMeta = in.ListMeta
			out.Items = make([]autoscalingv2.HorizontalPodAutoscaler, len(in.Items))
			for i := range in.Items {
				hpaV1ToV2(&in.Items[i], &out.Items[i])
			}
			return nil
		}))
	// events.k8s.io/v1 Event is converted from/to the core/v1 hub.
	utilruntime.Must(Scheme.AddConversionFunc((*corev1.Event)(nil), (*eventsv1.Event)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			coreEventToEvents(a.(*corev1.Event), b.(*eventsv1.Event))
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*eventsv1.Event)(nil), (*corev1.Event)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			eventsEventToCore(a.(*eventsv1.Event), b.(*corev1.Event))
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*corev1.EventList)(nil), (*eventsv1.EventList)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*corev1.EventList), b.(*eventsv1.EventList)
			out.ListMeta = in.ListMeta
			out.Items = make([]eventsv1.Event, len(in.Items))
			for i := range in.Items {
				coreEventToEvents(&in.Items[i], &out.Items[i])
			}
			return nil
		}))
	utilruntime.Must(Scheme.AddConversionFunc((*eventsv1.EventList)(nil), (*corev1.EventList)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*eventsv1.EventList), b.(*corev1.EventList)
			out.ListMeta = in.ListMeta
			out.Items = make([]corev1.Event, len(in.Items))
			for i := range in.Items {
				eventsEventToCore(&in.Items[i], &out.Items[i])
			}
			return nil
		}))

	utilruntime.Must(Scheme.SetVersionPriority(autoscalingv2.SchemeGroupVersion, autoscalingv1.SchemeGroupVersion))
	registerDefaults(Scheme)
	registerFieldLabelConversions(Scheme)
}

// identityConversion copies an object onto another object of the same Go type;
// Scheme.Convert (admission webhooks, field managers) needs it between "versions".
func identityConversion(a, b interface{}, _ conversion.Scope) error {
	in := a.(runtime.Object).DeepCopyObject()
	reflect.ValueOf(b).Elem().Set(reflect.ValueOf(in).Elem())
	return nil
}
