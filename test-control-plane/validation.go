package main

// Type-specific validation, modelled on kube-apiserver's pkg/apis/*/validation: the
// checks clients meet in practice, with kube's field paths and messages (422 Invalid).

import (
	"context"
	"fmt"
	"net"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const immutableMsg = apimachineryvalidation.FieldImmutableErrorMsg

var immutable = apimachineryvalidation.ValidateImmutableField

func nonNegative(v int64, p *field.Path) field.ErrorList {
	if v < 0 {
		return field.ErrorList{field.Invalid(p, v, "must be greater than or equal to 0")}
	}
	return nil
}

// --- ConfigMap / Secret ---

func validateDataKeys(keys []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range keys {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(p.Key(k), k, msg))
		}
	}
	return errs
}

func validateConfigMap(obj runtime.Object) field.ErrorList {
	cm := obj.(*corev1.ConfigMap)
	var keys []string
	for k := range cm.Data {
		keys = append(keys, k)
	}
	errs := validateDataKeys(keys, field.NewPath("data"))
	keys = keys[:0]
	for k := range cm.BinaryData {
		if _, dup := cm.Data[k]; dup {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, "duplicate of key present in data"))
		}
		keys = append(keys, k)
	}
	return append(errs, validateDataKeys(keys, field.NewPath("binaryData"))...)
}

func validateConfigMapUpdate(obj, old runtime.Object) field.ErrorList {
	cm, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
	var errs field.ErrorList
	if o.Immutable != nil && *o.Immutable {
		if cm.Immutable == nil || !*cm.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !apiequality.Semantic.DeepEqual(cm.Data, o.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if !apiequality.Semantic.DeepEqual(cm.BinaryData, o.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

func validateSecret(obj runtime.Object) field.ErrorList {
	s := obj.(*corev1.Secret)
	dataPath := field.NewPath("data")
	var keys []string
	total := 0
	for k, v := range s.Data {
		keys = append(keys, k)
		total += len(v)
	}
	errs := validateDataKeys(keys, dataPath)
	if total > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		if _, ok := s.Data[corev1.DockerConfigKey]; !ok {
			errs = append(errs, field.Required(dataPath.Key(corev1.DockerConfigKey), ""))
		}
	case corev1.SecretTypeDockerConfigJson:
		if _, ok := s.Data[corev1.DockerConfigJsonKey]; !ok {
			errs = append(errs, field.Required(dataPath.Key(corev1.DockerConfigJsonKey), ""))
		}
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""),
				field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		if _, ok := s.Data[corev1.TLSCertKey]; !ok {
			errs = append(errs, field.Required(dataPath.Key(corev1.TLSCertKey), ""))
		}
		if _, ok := s.Data[corev1.TLSPrivateKeyKey]; !ok {
			errs = append(errs, field.Required(dataPath.Key(corev1.TLSPrivateKeyKey), ""))
		}
	}
	return errs
}

func validateSecretUpdate(obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*corev1.Secret), old.(*corev1.Secret)
	errs := immutable(s.Type, o.Type, field.NewPath("type"))
	if o.Immutable != nil && *o.Immutable {
		if s.Immutable == nil || !*s.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !apiequality.Semantic.DeepEqual(s.Data, o.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

// --- Service ---

func isHeadless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

func validateService(obj runtime.Object) field.ErrorList {
	svc := obj.(*corev1.Service)
	spec := field.NewPath("spec")
	var errs field.ErrorList
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), svc.Spec.Type,
			[]string{"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}))
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ClusterIP != "" || len(svc.Spec.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if svc.Spec.ExternalName == "" {
			errs = append(errs, field.Required(spec.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(svc.Spec.ExternalName) {
				errs = append(errs, field.Invalid(spec.Child("externalName"), svc.Spec.ExternalName, msg))
			}
		}
	} else if len(svc.Spec.Ports) == 0 && !isHeadless(svc) {
		errs = append(errs, field.Required(spec.Child("ports"), ""))
	}
	if isHeadless(svc) && svc.Spec.Type != corev1.ServiceTypeClusterIP && svc.Spec.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Invalid(spec.Child("clusterIPs").Index(0), svc.Spec.ClusterIPs,
			fmt.Sprintf("may not be set to 'None' for %s services", svc.Spec.Type)))
	}
	if len(svc.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIPs[0] != svc.Spec.ClusterIP {
		errs = append(errs, field.Invalid(spec.Child("clusterIPs"), svc.Spec.ClusterIPs,
			"element [0] must match clusterIP"))
	}
	for i, ip := range svc.Spec.ClusterIPs {
		if ip != corev1.ClusterIPNone && net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(spec.Child("clusterIPs").Index(i), ip, "must be a valid IP address"))
		}
	}
	names := sets.New[string]()
	for i, p := range svc.Spec.Ports {
		pp := spec.Child("ports").Index(i)
		if len(svc.Spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		} else if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
		}
		switch p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"SCTP", "TCP", "UDP"}))
		}
		errs = append(errs, validatePortNumOrName(p.TargetPort, pp.Child("targetPort"))...)
		if p.NodePort != 0 && svc.Spec.Type == corev1.ServiceTypeClusterIP {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
		}
		if p.NodePort != 0 && svc.Spec.Type == corev1.ServiceTypeExternalName {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ExternalName'"))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(svc.Spec.Selector, spec.Child("selector"))...)
	return errs
}

func validatePortNumOrName(port intstr.IntOrString, p *field.Path) field.ErrorList {
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			return field.ErrorList{field.Invalid(p, port.IntValue(), msg)}
		}
		return nil
	}
	for _, msg := range validation.IsValidPortName(port.StrVal) {
		return field.ErrorList{field.Invalid(p, port.StrVal, msg)}
	}
	return nil
}

func validateServiceUpdate(obj, old runtime.Object) field.ErrorList {
	svc, o := obj.(*corev1.Service), old.(*corev1.Service)
	var errs field.ErrorList
	if svc.Spec.Type == corev1.ServiceTypeExternalName || o.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if isHeadless(svc) && isHeadless(o) {
		return nil
	}
	ips := field.NewPath("spec", "clusterIPs")
	switch {
	case len(o.Spec.ClusterIPs) == len(svc.Spec.ClusterIPs):
		for i, ip := range o.Spec.ClusterIPs {
			if ip != svc.Spec.ClusterIPs[i] {
				errs = append(errs, field.Invalid(ips.Index(i), svc.Spec.ClusterIPs, "may not change once set"))
			}
		}
	case len(o.Spec.ClusterIPs) > len(svc.Spec.ClusterIPs):
		if len(svc.Spec.ClusterIPs) == 0 {
			errs = append(errs, field.Invalid(ips.Index(0), svc.Spec.ClusterIPs, "primary clusterIP can not be unset"))
		} else if o.Spec.ClusterIPs[0] != svc.Spec.ClusterIPs[0] {
			errs = append(errs, field.Invalid(ips.Index(0), svc.Spec.ClusterIPs, "may not change once set"))
		}
	default:
		if len(o.Spec.ClusterIPs) > 0 && o.Spec.ClusterIPs[0] != svc.Spec.ClusterIPs[0] {
			errs = append(errs, field.Invalid(ips.Index(0), svc.Spec.ClusterIPs, "may not change once set"))
		}
	}
	return errs
}

// --- PersistentVolumeClaim ---

func validatePVC(obj runtime.Object) field.ErrorList {
	pvc := obj.(*corev1.PersistentVolumeClaim)
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if len(pvc.Spec.AccessModes) == 0 {
		errs = append(errs, field.Required(spec.Child("accessModes"), "at least 1 access mode is required"))
	}
	if pvc.Spec.DataSource == nil && pvc.Spec.DataSourceRef == nil {
		if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			errs = append(errs, field.Required(spec.Child("resources").Key(string(corev1.ResourceStorage)), ""))
		}
	}
	return errs
}

// validatePVCUpdate follows kube 1.36 (RecoverVolumeExpansionFailure is GA): the spec
// is immutable except resources.requests of bound claims and a volumeName set once;
// a request may not drop to or below status.capacity, nor below the previous value
// when no capacity has been recorded.
func validatePVCUpdate(obj, old runtime.Object) field.ErrorList {
	pvc, o := obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim)
	var errs field.ErrorList
	newClone, oldClone := pvc.DeepCopy(), o.DeepCopy()
	if oldClone.Spec.VolumeName == "" {
		oldClone.Spec.VolumeName = newClone.Spec.VolumeName
	}
	if pvc.Status.Phase == corev1.ClaimBound && newClone.Spec.Resources.Requests != nil {
		if q, ok := o.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			newClone.Spec.Resources.Requests[corev1.ResourceStorage] = q
		}
	}
	newClone.Spec.VolumeAttributesClassName = oldClone.Spec.VolumeAttributesClassName
	if !apiequality.Semantic.DeepEqual(newClone.Spec, oldClone.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"),
			"spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
	}
	oldSize := o.Spec.Resources.Requests[corev1.ResourceStorage]
	newSize := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	capacity, hasCapacity := o.Status.Capacity[corev1.ResourceStorage]
	if newSize.Cmp(oldSize) < 0 {
		sizePath := field.NewPath("spec", "resources", "requests", "storage")
		if hasCapacity && !capacity.IsZero() {
			if newSize.Cmp(capacity) <= 0 {
				errs = append(errs, field.Forbidden(sizePath, "field can not be less than status.capacity"))
			}
		} else {
			errs = append(errs, field.Forbidden(sizePath, "field can not be less than previous value"))
		}
	}
	return errs
}

// --- Pods and pod templates ---

func validatePodSpec(spec *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes := sets.New[string]()
	for i, v := range spec.Volumes {
		vp := p.Child("volumes").Index(i)
		if v.Name == "" {
			errs = append(errs, field.Required(vp.Child("name"), ""))
		} else if volumes.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes.Insert(v.Name)
	}
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	names := sets.New[string]()
	check := func(cs []corev1.Container, cp *field.Path) {
		for i, c := range cs {
			ip := cp.Index(i)
			if c.Name == "" {
				errs = append(errs, field.Required(ip.Child("name"), ""))
			} else {
				for _, msg := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(ip.Child("name"), c.Name, msg))
				}
				if names.Has(c.Name) {
					errs = append(errs, field.Duplicate(ip.Child("name"), c.Name))
				}
				names.Insert(c.Name)
			}
			if c.Image == "" {
				errs = append(errs, field.Required(ip.Child("image"), ""))
			}
			for j, port := range c.Ports {
				pp := ip.Child("ports").Index(j)
				for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
					errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
				}
			}
			for j, m := range c.VolumeMounts {
				if !volumes.Has(m.Name) {
					errs = append(errs, field.NotFound(ip.Child("volumeMounts").Index(j).Child("name"), m.Name))
				}
			}
			for j, e := range c.Env {
				if e.Name == "" {
					errs = append(errs, field.Required(ip.Child("env").Index(j).Child("name"), ""))
				}
			}
			for name, limit := range c.Resources.Limits {
				if req, ok := c.Resources.Requests[name]; ok && req.Cmp(limit) > 0 {
					errs = append(errs, field.Invalid(ip.Child("resources", "requests").Key(string(name)), req.String(),
						fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String())))
				}
			}
		}
	}
	check(spec.InitContainers, p.Child("initContainers"))
	check(spec.Containers, p.Child("containers"))
	switch spec.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), spec.RestartPolicy, []string{"Always", "Never", "OnFailure"}))
	}
	switch spec.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		errs = append(errs, field.NotSupported(p.Child("dnsPolicy"), spec.DNSPolicy,
			[]string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}))
	}
	if spec.TerminationGracePeriodSeconds != nil {
		errs = append(errs, nonNegative(*spec.TerminationGracePeriodSeconds, p.Child("terminationGracePeriodSeconds"))...)
	}
	return errs
}

func validatePodTemplate(t *corev1.PodTemplateSpec, p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabels(t.Labels, p.Child("metadata", "labels"))
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, p.Child("metadata", "annotations"))...)
	return append(errs, validatePodSpec(&t.Spec, p.Child("spec"))...)
}

func validatePod(obj runtime.Object) field.ErrorList {
	return validatePodSpec(&obj.(*corev1.Pod).Spec, field.NewPath("spec"))
}

func validatePodUpdate(obj, old runtime.Object) field.ErrorList {
	pod, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	specPath := field.NewPath("spec")
	if len(pod.Spec.Containers) != len(o.Spec.Containers) {
		return field.ErrorList{field.Forbidden(specPath.Child("containers"), "pod updates may not add or remove containers")}
	}
	munged := pod.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = o.Spec.Containers[i].Image
	}
	if len(munged.InitContainers) == len(o.Spec.InitContainers) {
		for i := range munged.InitContainers {
			munged.InitContainers[i].Image = o.Spec.InitContainers[i].Image
		}
	}
	munged.ActiveDeadlineSeconds = o.Spec.ActiveDeadlineSeconds
	munged.SchedulingGates = o.Spec.SchedulingGates
	munged.Tolerations = o.Spec.Tolerations
	if o.Spec.TerminationGracePeriodSeconds != nil && *o.Spec.TerminationGracePeriodSeconds < 0 &&
		munged.TerminationGracePeriodSeconds != nil && *munged.TerminationGracePeriodSeconds == 1 {
		munged.TerminationGracePeriodSeconds = o.Spec.TerminationGracePeriodSeconds
	}
	if o.Spec.NodeName == "" {
		munged.NodeName = "" // set through pods/binding; tests may also set it directly
	}
	if !apiequality.Semantic.DeepEqual(*munged, o.Spec) {
		return field.ErrorList{field.Forbidden(specPath, "pod updates may not change fields other than `spec.containers[*].image`,"+
			"`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"+
			"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")}
	}
	return nil
}

// resetPodStatus: a new pod is Pending with its QoS class.
func resetPodStatus(obj runtime.Object) {
	pod := obj.(*corev1.Pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOS(pod)}
}

func podQOS(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	any := false
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq && !req.IsZero() {
				any = true
				requests[r] = req
			}
			if hasLim && !lim.IsZero() {
				any = true
				limits[r] = lim
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// --- workloads ---

// validateSelectorAndTemplate: the selector is required, non-empty, and matches the
// template's labels; the template must restart Always (what= "deployment", ...).
func validateSelectorAndTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, what string, restartAlways bool) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(spec.Child("selector"), sel, "empty selector is invalid for "+what))
		}
	}
	tp := spec.Child("template")
	if sel != nil {
		if s, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(spec.Child("selector"), sel, "invalid label selector"))
		} else if !s.Empty() && !s.Matches(labels.Set(t.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validatePodTemplate(t, tp)...)
	if restartAlways && t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []string{"Always"}))
	}
	if restartAlways && t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tp.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+what+" is not Supported"))
	}
	return errs
}

func replicasErr(r *int32) field.ErrorList {
	if r == nil {
		return nil
	}
	return nonNegative(int64(*r), field.NewPath("spec", "replicas"))
}

func selectorImmutable(n, o *metav1.LabelSelector) field.ErrorList {
	return immutable(n, o, field.NewPath("spec", "selector"))
}

func validateDeployment(obj runtime.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	errs := append(replicasErr(d.Spec.Replicas), validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, "deployment", true)...)
	st := field.NewPath("spec", "strategy")
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if d.Spec.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(st.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
			if isZeroIntOrPercent(ru.MaxUnavailable) && isZeroIntOrPercent(ru.MaxSurge) {
				errs = append(errs, field.Invalid(st.Child("rollingUpdate", "maxUnavailable"), ru.MaxUnavailable.String(),
					"may not be 0 when `maxSurge` is 0"))
			}
		}
	default:
		errs = append(errs, field.NotSupported(st.Child("type"), d.Spec.Strategy.Type, []string{"Recreate", "RollingUpdate"}))
	}
	if d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds <= d.Spec.MinReadySeconds {
		errs = append(errs, field.Invalid(field.NewPath("spec", "progressDeadlineSeconds"), *d.Spec.ProgressDeadlineSeconds,
			"must be greater than minReadySeconds"))
	}
	return errs
}

func isZeroIntOrPercent(v *intstr.IntOrString) bool {
	if v == nil {
		return false
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return v.StrVal == "0%" || v.StrVal == "0"
}

func validateDeploymentUpdate(obj, old runtime.Object) field.ErrorList {
	return selectorImmutable(obj.(*appsv1.Deployment).Spec.Selector, old.(*appsv1.Deployment).Spec.Selector)
}

func validateReplicaSet(obj runtime.Object) field.ErrorList {
	rs := obj.(*appsv1.ReplicaSet)
	return append(replicasErr(rs.Spec.Replicas), validateSelectorAndTemplate(rs.Spec.Selector, &rs.Spec.Template, "replicaset", true)...)
}

func validateReplicaSetUpdate(obj, old runtime.Object) field.ErrorList {
	return selectorImmutable(obj.(*appsv1.ReplicaSet).Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector)
}

func validateDaemonSet(obj runtime.Object) field.ErrorList {
	ds := obj.(*appsv1.DaemonSet)
	return validateSelectorAndTemplate(ds.Spec.Selector, &ds.Spec.Template, "daemonset", true)
}

func validateDaemonSetUpdate(obj, old runtime.Object) field.ErrorList {
	return selectorImmutable(obj.(*appsv1.DaemonSet).Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector)
}

func validateStatefulSet(obj runtime.Object) field.ErrorList {
	s := obj.(*appsv1.StatefulSet)
	spec := field.NewPath("spec")
	errs := append(replicasErr(s.Spec.Replicas), validateSelectorAndTemplate(s.Spec.Selector, &s.Spec.Template, "statefulset", true)...)
	switch s.Spec.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(spec.Child("podManagementPolicy"), s.Spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	switch s.Spec.UpdateStrategy.Type {
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			errs = append(errs, nonNegative(int64(*ru.Partition), spec.Child("updateStrategy", "rollingUpdate", "partition"))...)
		}
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.Spec.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(spec.Child("updateStrategy", "rollingUpdate"), s.Spec.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	default:
		errs = append(errs, field.Invalid(spec.Child("updateStrategy"), s.Spec.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	return errs
}

func validateStatefulSetUpdate(obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
	clone := s.DeepCopy()
	clone.Spec.Replicas = o.Spec.Replicas
	clone.Spec.Template = o.Spec.Template
	clone.Spec.UpdateStrategy = o.Spec.UpdateStrategy
	clone.Spec.MinReadySeconds = o.Spec.MinReadySeconds
	clone.Spec.PersistentVolumeClaimRetentionPolicy = o.Spec.PersistentVolumeClaimRetentionPolicy
	clone.Spec.Ordinals = o.Spec.Ordinals
	clone.Spec.RevisionHistoryLimit = o.Spec.RevisionHistoryLimit
	if !apiequality.Semantic.DeepEqual(clone.Spec, o.Spec) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than "+
			"'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "+
			"and 'minReadySeconds' are forbidden")}
	}
	return nil
}

// --- batch ---

// prepareJobCreate generates the selector and pod labels unless manualSelector is set.
func prepareJobCreate(_ context.Context, obj runtime.Object) {
	j := obj.(*batchv1.Job)
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for _, k := range []string{batchv1.ControllerUidLabel, "controller-uid"} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = uid
		}
	}
	for _, k := range []string{batchv1.JobNameLabel, "job-name"} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = j.Name
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
	}
}

func validateJobTemplate(spec *batchv1.JobSpec, p *field.Path) field.ErrorList {
	errs := validatePodTemplate(&spec.Template, p.Child("template"))
	if rp := spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		errs = append(errs, field.NotSupported(p.Child("template", "spec", "restartPolicy"), rp, []string{"OnFailure", "Never"}))
	}
	for name, v := range map[string]*int32{"parallelism": spec.Parallelism, "completions": spec.Completions, "backoffLimit": spec.BackoffLimit} {
		if v != nil {
			errs = append(errs, nonNegative(int64(*v), p.Child(name))...)
		}
	}
	return errs
}

func validateJob(obj runtime.Object) field.ErrorList {
	j := obj.(*batchv1.Job)
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if j.Spec.Selector == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else if s, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err != nil {
		errs = append(errs, field.Invalid(spec.Child("selector"), j.Spec.Selector, "invalid label selector"))
	} else if !s.Matches(labels.Set(j.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), j.Spec.Template.Labels,
			"`selector` does not match template `labels`"))
	}
	return append(errs, validateJobTemplate(&j.Spec, spec)...)
}

// validateJobUpdate: the selector and most of the spec are immutable; the pod template
// may only change its scheduling directives while the job is suspended and has not
// started.
func validateJobUpdate(obj, old runtime.Object) field.ErrorList {
	j, o := obj.(*batchv1.Job), old.(*batchv1.Job)
	spec := field.NewPath("spec")
	errs := immutable(j.Spec.Selector, o.Spec.Selector, spec.Child("selector"))
	errs = append(errs, immutable(j.Spec.Completions, o.Spec.Completions, spec.Child("completions"))...)
	errs = append(errs, immutable(j.Spec.CompletionMode, o.Spec.CompletionMode, spec.Child("completionMode"))...)
	errs = append(errs, immutable(j.Spec.PodFailurePolicy, o.Spec.PodFailurePolicy, spec.Child("podFailurePolicy"))...)
	errs = append(errs, immutable(j.Spec.ManagedBy, o.Spec.ManagedBy, spec.Child("managedBy"))...)
	tmpl := j.Spec.Template.DeepCopy()
	if o.Spec.Suspend != nil && *o.Spec.Suspend && o.Status.StartTime == nil {
		tmpl.Labels, tmpl.Annotations = o.Spec.Template.Labels, o.Spec.Template.Annotations
		tmpl.Spec.NodeSelector, tmpl.Spec.Tolerations = o.Spec.Template.Spec.NodeSelector, o.Spec.Template.Spec.Tolerations
		tmpl.Spec.Affinity, tmpl.Spec.SchedulingGates = o.Spec.Template.Spec.Affinity, o.Spec.Template.Spec.SchedulingGates
	}
	errs = append(errs, immutable(*tmpl, o.Spec.Template, spec.Child("template"))...)
	return errs
}

func validateCronJob(obj runtime.Object) field.ErrorList {
	c := obj.(*batchv1.CronJob)
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if c.Spec.Schedule == "" {
		errs = append(errs, field.Required(spec.Child("schedule"), ""))
	}
	switch c.Spec.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	default:
		errs = append(errs, field.NotSupported(spec.Child("concurrencyPolicy"), c.Spec.ConcurrencyPolicy, []string{"Allow", "Forbid", "Replace"}))
	}
	return append(errs, validateJobTemplate(&c.Spec.JobTemplate.Spec, spec.Child("jobTemplate", "spec"))...)
}

// --- storage ---

func validateStorageClassUpdate(obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*storagev1.StorageClass), old.(*storagev1.StorageClass)
	var errs field.ErrorList
	if !apiequality.Semantic.DeepEqual(s.Parameters, o.Parameters) {
		errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
	}
	if s.Provisioner != o.Provisioner {
		errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
	}
	if !apiequality.Semantic.DeepEqual(s.ReclaimPolicy, o.ReclaimPolicy) {
		errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
	}
	errs = append(errs, immutable(s.VolumeBindingMode, o.VolumeBindingMode, field.NewPath("volumeBindingMode"))...)
	return errs
}

var _ = resource.MustParse
