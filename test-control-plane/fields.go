package main

// Field selectors: the selectable fields of each type (the store's AttrFunc) and the
// field-label conversion functions that admit them in requests, as kube-apiserver has.

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
)

var podFieldKeys = []string{"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
	"spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"}

var eventFieldKeys = []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
	"involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
	"reason", "reportingComponent", "source", "type"}

func namespaceFields(obj runtime.Object) fields.Set {
	ns := obj.(*corev1.Namespace)
	return fields.Set{"status.phase": string(ns.Status.Phase)}
}

func secretFields(obj runtime.Object) fields.Set {
	return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
}

func serviceFields(obj runtime.Object) fields.Set {
	s := obj.(*corev1.Service)
	return fields.Set{"spec.clusterIP": s.Spec.ClusterIP, "spec.type": string(s.Spec.Type)}
}

func podFields(obj runtime.Object) fields.Set {
	p := obj.(*corev1.Pod)
	ips := []string{}
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	return fields.Set{
		"spec.nodeName":            p.Spec.NodeName,
		"spec.restartPolicy":       string(p.Spec.RestartPolicy),
		"spec.schedulerName":       p.Spec.SchedulerName,
		"spec.serviceAccountName":  p.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(p.Spec.HostNetwork),
		"status.phase":             string(p.Status.Phase),
		"status.podIP":             p.Status.PodIP,
		"status.podIPs":            strings.Join(ips, ","),
		"status.nominatedNodeName": p.Status.NominatedNodeName,
	}
}

func nodeFields(obj runtime.Object) fields.Set {
	return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
}

func eventFields(obj runtime.Object) fields.Set {
	e := obj.(*corev1.Event)
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	return fields.Set{
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
	}
}

func replicaSetFields(obj runtime.Object) fields.Set {
	return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
}

func jobFields(obj runtime.Object) fields.Set {
	return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
}

// attrFunc returns the labels and selectable fields of an object of def's type.
func attrFunc(def *resourceDef) storage.AttrFunc {
	return func(obj runtime.Object) (labels.Set, fields.Set, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		om := &metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace()}
		set := generic.ObjectMetaFieldsSet(om, def.namespaced)
		if def.fields != nil {
			set = generic.MergeFieldsSets(set, def.fields(obj))
		}
		return labels.Set(m.GetLabels()), set, nil
	}
}

func registerFieldLabelConversions(s *runtime.Scheme) {
	for _, def := range resourceTable() {
		allowed := map[string]string{"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
		for _, k := range def.fieldKeys {
			allowed[k] = k
		}
		versions := append([]string{def.version}, def.alsoVersions...)
		for _, v := range versions {
			registerFieldLabels(s, schema.GroupVersionKind{Group: def.group, Version: v, Kind: def.kind}, allowed)
		}
	}
	// events.k8s.io/v1 names the same fields differently.
	ev := map[string]string{"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace",
		"reason": "reason", "type": "type", "reportingController": "reportingComponent", "deprecatedSource": "source"}
	for _, k := range eventFieldKeys {
		if strings.HasPrefix(k, "involvedObject.") {
			ev["regarding."+strings.TrimPrefix(k, "involvedObject.")] = k
		}
	}
	registerFieldLabels(s, schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"}, ev)
}

func registerFieldLabels(s *runtime.Scheme, gvk schema.GroupVersionKind, allowed map[string]string) {
	utilruntime.Must(s.AddFieldLabelConversionFunc(gvk, func(label, value string) (string, string, error) {
		if internal, ok := allowed[label]; ok {
			return internal, value, nil
		}
		return "", "", fmt.Errorf("%q is not a known field selector: only %q", label, keysOf(allowed))
	}))
}

func keysOf(m map[string]string) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return strings.Join(out, `", "`)
}
