package main

// The table of built-in resources we serve, with kube-apiserver's scope, short names,
// categories and subresources, and the type-specific hooks (defaulting lives in
// defaults.go and runs on decode; these hooks run in the registry strategy).

import (
	"context"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/rest"
)

type resourceDef struct {
	group, version string // the storage (and preferred) version
	alsoVersions   []string
	resource, kind string
	namespaced     bool
	shortNames     []string
	categories     []string
	status         bool // has a /status subresource
	scale          bool // has a /scale subresource
	generation     bool // metadata.generation tracks spec changes
	createOnUpdate bool // PUT may create (AllowCreateOnUpdate)
	newObj         func() runtime.Object
	newList        func() runtime.Object
	// selectable fields beyond metadata.name/metadata.namespace
	fieldKeys []string
	fields    func(obj runtime.Object) fields.Set
	// object name validation (DNS subdomain unless set)
	nameFn apimachineryvalidation.ValidateNameFunc
	// type-specific strategy hooks (all optional)
	prepareCreate  func(ctx context.Context, obj runtime.Object)
	prepareUpdate  func(ctx context.Context, obj, old runtime.Object)
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	resetStatus    func(obj runtime.Object) // status on create; zero value unless set
	gcPolicy       rest.GarbageCollectionPolicy
	// graceful deletion (rest.RESTGracefulDeleteStrategy); nil: deleted at once
	checkGracefulDelete func(ctx context.Context, obj runtime.Object, options *metav1.DeleteOptions) bool
}

func (d *resourceDef) gv() schema.GroupVersion {
	return schema.GroupVersion{Group: d.group, Version: d.version}
}
func (d *resourceDef) gr() schema.GroupResource {
	return schema.GroupResource{Group: d.group, Resource: d.resource}
}
func (d *resourceDef) gvk() schema.GroupVersionKind { return d.gv().WithKind(d.kind) }

var all = []string{"all"}

var resourceTableCache []*resourceDef

func resourceTable() []*resourceDef {
	if resourceTableCache != nil {
		return resourceTableCache
	}
	dns1035 := apimachineryvalidation.NameIsDNS1035Label
	dnsLabel := apimachineryvalidation.NameIsDNSLabel
	pathSegment := func(name string, prefix bool) []string { return path.IsValidPathSegmentName(name) }
	t := []*resourceDef{
		// core/v1
		{group: "", version: "v1", resource: "namespaces", kind: "Namespace", shortNames: []string{"ns"}, status: true,
			newObj: func() runtime.Object { return &corev1.Namespace{} }, newList: func() runtime.Object { return &corev1.NamespaceList{} },
			nameFn: dnsLabel, fieldKeys: []string{"status.phase"}, fields: namespaceFields,
			prepareCreate: prepareNamespaceCreate, prepareUpdate: prepareNamespaceUpdate,
			resetStatus: func(runtime.Object) {}},
		{group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", namespaced: true, shortNames: []string{"cm"},
			newObj: func() runtime.Object { return &corev1.ConfigMap{} }, newList: func() runtime.Object { return &corev1.ConfigMapList{} },
			validate: validateConfigMap, validateUpdate: validateConfigMapUpdate},
		{group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true,
			newObj: func() runtime.Object { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} },
			fieldKeys: []string{"type"}, fields: secretFields, validate: validateSecret, validateUpdate: validateSecretUpdate,
			// apply and patch results are not decoded again: fold stringData here too
			prepareCreate: func(_ context.Context, obj runtime.Object) { mergeStringData(obj.(*corev1.Secret)) },
			prepareUpdate: func(_ context.Context, obj, _ runtime.Object) { mergeStringData(obj.(*corev1.Secret)) }},
		{group: "", version: "v1", resource: "services", kind: "Service", namespaced: true, shortNames: []string{"svc"}, categories: all,
			status: true, createOnUpdate: true, nameFn: dns1035,
			newObj: func() runtime.Object { return &corev1.Service{} }, newList: func() runtime.Object { return &corev1.ServiceList{} },
			fieldKeys: []string{"spec.clusterIP", "spec.type"}, fields: serviceFields,
			validate: validateService, validateUpdate: validateServiceUpdate},
		{group: "", version: "v1", resource: "endpoints", kind: "Endpoints", namespaced: true, shortNames: []string{"ep"}, createOnUpdate: true,
			newObj: func() runtime.Object { return &corev1.Endpoints{} }, newList: func() runtime.Object { return &corev1.EndpointsList{} }},
		{group: "", version: "v1", resource: "serviceaccounts", kind: "ServiceAccount", namespaced: true, shortNames: []string{"sa"},
			newObj: func() runtime.Object { return &corev1.ServiceAccount{} }, newList: func() runtime.Object { return &corev1.ServiceAccountList{} }},
		{group: "", version: "v1", resource: "persistentvolumeclaims", kind: "PersistentVolumeClaim", namespaced: true, shortNames: []string{"pvc"},
			status: true,
			newObj: func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, newList: func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
			validate: validatePVC, validateUpdate: validatePVCUpdate},
		{group: "", version: "v1", resource: "persistentvolumes", kind: "PersistentVolume", shortNames: []string{"pv"}, status: true,
			newObj: func() runtime.Object { return &corev1.PersistentVolume{} }, newList: func() runtime.Object { return &corev1.PersistentVolumeList{} }},
		{group: "", version: "v1", resource: "pods", kind: "Pod", namespaced: true, shortNames: []string{"po"}, categories: all,
			status: true, generation: true,
			newObj: func() runtime.Object { return &corev1.Pod{} }, newList: func() runtime.Object { return &corev1.PodList{} },
			fieldKeys: podFieldKeys, fields: podFields,
			validate: validatePod, validateUpdate: validatePodUpdate, resetStatus: resetPodStatus,
			checkGracefulDelete: checkPodGracefulDelete},
		{group: "", version: "v1", resource: "nodes", kind: "Node", shortNames: []string{"no"}, status: true,
			newObj: func() runtime.Object { return &corev1.Node{} }, newList: func() runtime.Object { return &corev1.NodeList{} },
			fieldKeys: []string{"spec.unschedulable"}, fields: nodeFields,
			resetStatus: func(runtime.Object) {}}, // nodes are created with status (by kubelets)
		{group: "", version: "v1", resource: "events", kind: "Event", namespaced: true, shortNames: []string{"ev"}, createOnUpdate: true,
			newObj: func() runtime.Object { return &corev1.Event{} }, newList: func() runtime.Object { return &corev1.EventList{} },
			fieldKeys: eventFieldKeys, fields: eventFields},

		// apps/v1
		{group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true, shortNames: []string{"deploy"},
			categories: all, status: true, scale: true, generation: true,
			newObj: func() runtime.Object { return &appsv1.Deployment{} }, newList: func() runtime.Object { return &appsv1.DeploymentList{} },
			validate: validateDeployment, validateUpdate: validateDeploymentUpdate},
		{group: "apps", version: "v1", resource: "statefulsets", kind: "StatefulSet", namespaced: true, shortNames: []string{"sts"},
			categories: all, status: true, scale: true, generation: true,
			newObj: func() runtime.Object { return &appsv1.StatefulSet{} }, newList: func() runtime.Object { return &appsv1.StatefulSetList{} },
			validate: validateStatefulSet, validateUpdate: validateStatefulSetUpdate},
		{group: "apps", version: "v1", resource: "daemonsets", kind: "DaemonSet", namespaced: true, shortNames: []string{"ds"},
			categories: all, status: true, generation: true,
			newObj: func() runtime.Object { return &appsv1.DaemonSet{} }, newList: func() runtime.Object { return &appsv1.DaemonSetList{} },
			validate: validateDaemonSet, validateUpdate: validateDaemonSetUpdate},
		{group: "apps", version: "v1", resource: "replicasets", kind: "ReplicaSet", namespaced: true, shortNames: []string{"rs"},
			categories: all, status: true, scale: true, generation: true,
			newObj: func() runtime.Object { return &appsv1.ReplicaSet{} }, newList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			fieldKeys: []string{"status.replicas"}, fields: replicaSetFields,
			validate: validateReplicaSet, validateUpdate: validateReplicaSetUpdate},
		{group: "apps", version: "v1", resource: "controllerrevisions", kind: "ControllerRevision", namespaced: true,
			newObj: func() runtime.Object { return &appsv1.ControllerRevision{} }, newList: func() runtime.Object { return &appsv1.ControllerRevisionList{} }},

		// batch/v1
		{group: "batch", version: "v1", resource: "jobs", kind: "Job", namespaced: true, categories: all, status: true, generation: true,
			newObj: func() runtime.Object { return &batchv1.Job{} }, newList: func() runtime.Object { return &batchv1.JobList{} },
			fieldKeys: []string{"status.successful"}, fields: jobFields,
			prepareCreate: prepareJobCreate, validate: validateJob, validateUpdate: validateJobUpdate,
			gcPolicy: rest.OrphanDependents}, // batch/v1 Jobs orphan their pods unless told otherwise, as in kube
		{group: "batch", version: "v1", resource: "cronjobs", kind: "CronJob", namespaced: true, shortNames: []string{"cj"},
			categories: all, status: true, generation: true,
			newObj: func() runtime.Object { return &batchv1.CronJob{} }, newList: func() runtime.Object { return &batchv1.CronJobList{} },
			validate: validateCronJob},

		// discovery.k8s.io/v1
		{group: "discovery.k8s.io", version: "v1", resource: "endpointslices", kind: "EndpointSlice", namespaced: true, generation: true,
			newObj: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, newList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} }},

		// networking.k8s.io/v1
		{group: "networking.k8s.io", version: "v1", resource: "ingresses", kind: "Ingress", namespaced: true, shortNames: []string{"ing"},
			status: true, generation: true,
			newObj: func() runtime.Object { return &networkingv1.Ingress{} }, newList: func() runtime.Object { return &networkingv1.IngressList{} }},
		{group: "networking.k8s.io", version: "v1", resource: "ingressclasses", kind: "IngressClass", generation: true,
			newObj: func() runtime.Object { return &networkingv1.IngressClass{} }, newList: func() runtime.Object { return &networkingv1.IngressClassList{} }},
		{group: "networking.k8s.io", version: "v1", resource: "networkpolicies", kind: "NetworkPolicy", namespaced: true,
			shortNames: []string{"netpol"}, generation: true,
			newObj: func() runtime.Object { return &networkingv1.NetworkPolicy{} }, newList: func() runtime.Object { return &networkingv1.NetworkPolicyList{} }},

		// coordination.k8s.io/v1
		{group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", namespaced: true, createOnUpdate: true,
			newObj: func() runtime.Object { return &coordinationv1.Lease{} }, newList: func() runtime.Object { return &coordinationv1.LeaseList{} }},

		// policy/v1
		{group: "policy", version: "v1", resource: "poddisruptionbudgets", kind: "PodDisruptionBudget", namespaced: true,
			shortNames: []string{"pdb"}, status: true, generation: true,
			newObj: func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, newList: func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} }},

		// autoscaling/v2 (also served as autoscaling/v1)
		{group: "autoscaling", version: "v2", alsoVersions: []string{"v1"}, resource: "horizontalpodautoscalers",
			kind: "HorizontalPodAutoscaler", namespaced: true, shortNames: []string{"hpa"}, categories: all, status: true, generation: true,
			newObj:  func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
			newList: func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} }},

		// storage.k8s.io/v1
		{group: "storage.k8s.io", version: "v1", resource: "storageclasses", kind: "StorageClass", shortNames: []string{"sc"},
			newObj: func() runtime.Object { return &storagev1.StorageClass{} }, newList: func() runtime.Object { return &storagev1.StorageClassList{} },
			validateUpdate: validateStorageClassUpdate},

		// rbac.authorization.k8s.io/v1 (stored, not enforced)
		{group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", kind: "Role", namespaced: true, createOnUpdate: true, nameFn: pathSegment,
			newObj: func() runtime.Object { return &rbacv1.Role{} }, newList: func() runtime.Object { return &rbacv1.RoleList{} }},
		{group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", kind: "RoleBinding", namespaced: true, createOnUpdate: true, nameFn: pathSegment,
			newObj: func() runtime.Object { return &rbacv1.RoleBinding{} }, newList: func() runtime.Object { return &rbacv1.RoleBindingList{} }},
		{group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", kind: "ClusterRole", createOnUpdate: true, nameFn: pathSegment,
			newObj: func() runtime.Object { return &rbacv1.ClusterRole{} }, newList: func() runtime.Object { return &rbacv1.ClusterRoleList{} }},
		{group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings", kind: "ClusterRoleBinding", createOnUpdate: true, nameFn: pathSegment,
			newObj: func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, newList: func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} }},

		// admissionregistration.k8s.io/v1
		{group: "admissionregistration.k8s.io", version: "v1", resource: "mutatingwebhookconfigurations", kind: "MutatingWebhookConfiguration",
			generation: true,
			newObj:     func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
			newList:    func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} }},
		{group: "admissionregistration.k8s.io", version: "v1", resource: "validatingwebhookconfigurations", kind: "ValidatingWebhookConfiguration",
			generation: true,
			newObj:     func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
			newList:    func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} }},
	}
	for _, d := range t {
		if d.gcPolicy == "" {
			d.gcPolicy = rest.DeleteDependents // background
		}
		if d.nameFn == nil {
			d.nameFn = apimachineryvalidation.NameIsDNSSubdomain
		}
	}
	resourceTableCache = t
	return t
}

func findDef(group, resource string) *resourceDef {
	for _, d := range resourceTable() {
		if d.group == group && d.resource == resource {
			return d
		}
	}
	return nil
}
