package main

// Server-side printing (kubectl get): NAME, a few kube-like columns per type, AGE.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

type column struct {
	name string
	cell func(obj runtime.Object) interface{}
}

type tableConvertor struct{ cols []column }

func newTableConvertor(def *resourceDef) *tableConvertor {
	return &tableConvertor{cols: columnsFor(def)}
}

func (c *tableConvertor) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	fn := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		cells := []interface{}{m.GetName()}
		for _, col := range c.cols {
			cells = append(cells, col.cell(obj))
		}
		cells = append(cells, age(m.GetCreationTimestamp()))
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	var err error
	if meta.IsListType(object) {
		err = meta.EachListItem(object, fn)
	} else {
		err = fn(object)
	}
	if err != nil {
		return nil, err
	}
	if m, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
		table.Continue = m.GetContinue()
		table.RemainingItemCount = m.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	if opt, ok := tableOptions.(*metav1.TableOptions); !ok || !opt.NoHeaders {
		table.ColumnDefinitions = append(table.ColumnDefinitions,
			metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name"})
		for _, col := range c.cols {
			table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: col.name, Type: "string"})
		}
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Age", Type: "string"})
	}
	return table, nil
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func int32Ptr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func columnsFor(def *resourceDef) []column {
	switch def.kind {
	case "Namespace":
		return []column{{"Status", func(o runtime.Object) interface{} { return string(o.(*corev1.Namespace).Status.Phase) }}}
	case "ConfigMap":
		return []column{{"Data", func(o runtime.Object) interface{} {
			c := o.(*corev1.ConfigMap)
			return int64(len(c.Data) + len(c.BinaryData))
		}}}
	case "Secret":
		return []column{
			{"Type", func(o runtime.Object) interface{} { return string(o.(*corev1.Secret).Type) }},
			{"Data", func(o runtime.Object) interface{} { return int64(len(o.(*corev1.Secret).Data)) }}}
	case "Service":
		return []column{
			{"Type", func(o runtime.Object) interface{} { return string(o.(*corev1.Service).Spec.Type) }},
			{"Cluster-IP", func(o runtime.Object) interface{} {
				if ip := o.(*corev1.Service).Spec.ClusterIP; ip != "" {
					return ip
				}
				return "<none>"
			}},
			{"External-IP", func(o runtime.Object) interface{} {
				s := o.(*corev1.Service)
				if s.Spec.Type == corev1.ServiceTypeExternalName {
					return s.Spec.ExternalName
				}
				var ips []string
				for _, i := range s.Status.LoadBalancer.Ingress {
					ips = append(ips, i.IP+i.Hostname)
				}
				ips = append(ips, s.Spec.ExternalIPs...)
				if len(ips) == 0 {
					if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
						return "<pending>"
					}
					return "<none>"
				}
				return strings.Join(ips, ",")
			}},
			{"Port(s)", func(o runtime.Object) interface{} {
				var ps []string
				for _, p := range o.(*corev1.Service).Spec.Ports {
					s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
					if p.NodePort != 0 {
						s = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
					}
					ps = append(ps, s)
				}
				if len(ps) == 0 {
					return "<none>"
				}
				return strings.Join(ps, ",")
			}}}
	case "PersistentVolumeClaim":
		return []column{
			{"Status", func(o runtime.Object) interface{} { return string(o.(*corev1.PersistentVolumeClaim).Status.Phase) }},
			{"Volume", func(o runtime.Object) interface{} { return o.(*corev1.PersistentVolumeClaim).Spec.VolumeName }},
			{"Capacity", func(o runtime.Object) interface{} {
				q := o.(*corev1.PersistentVolumeClaim).Status.Capacity[corev1.ResourceStorage]
				if q.IsZero() {
					return ""
				}
				return q.String()
			}},
			{"StorageClass", func(o runtime.Object) interface{} {
				if sc := o.(*corev1.PersistentVolumeClaim).Spec.StorageClassName; sc != nil {
					return *sc
				}
				return "<unset>"
			}}}
	case "Pod":
		return []column{
			{"Ready", func(o runtime.Object) interface{} {
				p := o.(*corev1.Pod)
				ready := 0
				for _, c := range p.Status.ContainerStatuses {
					if c.Ready {
						ready++
					}
				}
				return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
			}},
			{"Status", func(o runtime.Object) interface{} {
				p := o.(*corev1.Pod)
				if p.DeletionTimestamp != nil {
					return "Terminating"
				}
				if p.Status.Reason != "" {
					return p.Status.Reason
				}
				return string(p.Status.Phase)
			}},
			{"Restarts", func(o runtime.Object) interface{} {
				n := int64(0)
				for _, c := range o.(*corev1.Pod).Status.ContainerStatuses {
					n += int64(c.RestartCount)
				}
				return n
			}}}
	case "Node":
		return []column{{"Status", func(o runtime.Object) interface{} {
			for _, c := range o.(*corev1.Node).Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return "Ready"
					}
					return "NotReady"
				}
			}
			return "Unknown"
		}}}
	case "Deployment":
		return []column{
			{"Ready", func(o runtime.Object) interface{} {
				d := o.(*appsv1.Deployment)
				return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, int32Ptr(d.Spec.Replicas))
			}},
			{"Up-to-date", func(o runtime.Object) interface{} { return int64(o.(*appsv1.Deployment).Status.UpdatedReplicas) }},
			{"Available", func(o runtime.Object) interface{} { return int64(o.(*appsv1.Deployment).Status.AvailableReplicas) }}}
	case "StatefulSet":
		return []column{{"Ready", func(o runtime.Object) interface{} {
			s := o.(*appsv1.StatefulSet)
			return fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, int32Ptr(s.Spec.Replicas))
		}}}
	case "ReplicaSet":
		return []column{
			{"Desired", func(o runtime.Object) interface{} { return int64(int32Ptr(o.(*appsv1.ReplicaSet).Spec.Replicas)) }},
			{"Current", func(o runtime.Object) interface{} { return int64(o.(*appsv1.ReplicaSet).Status.Replicas) }},
			{"Ready", func(o runtime.Object) interface{} { return int64(o.(*appsv1.ReplicaSet).Status.ReadyReplicas) }}}
	case "DaemonSet":
		return []column{
			{"Desired", func(o runtime.Object) interface{} { return int64(o.(*appsv1.DaemonSet).Status.DesiredNumberScheduled) }},
			{"Current", func(o runtime.Object) interface{} { return int64(o.(*appsv1.DaemonSet).Status.CurrentNumberScheduled) }},
			{"Ready", func(o runtime.Object) interface{} { return int64(o.(*appsv1.DaemonSet).Status.NumberReady) }},
			{"Up-to-date", func(o runtime.Object) interface{} { return int64(o.(*appsv1.DaemonSet).Status.UpdatedNumberScheduled) }},
			{"Available", func(o runtime.Object) interface{} { return int64(o.(*appsv1.DaemonSet).Status.NumberAvailable) }}}
	case "Job":
		return []column{{"Completions", func(o runtime.Object) interface{} {
			j := o.(*batchv1.Job)
			return fmt.Sprintf("%d/%d", j.Status.Succeeded, int32Ptr(j.Spec.Completions))
		}}}
	case "CronJob":
		return []column{
			{"Schedule", func(o runtime.Object) interface{} { return o.(*batchv1.CronJob).Spec.Schedule }},
			{"Suspend", func(o runtime.Object) interface{} {
				if s := o.(*batchv1.CronJob).Spec.Suspend; s != nil && *s {
					return "True"
				}
				return "False"
			}}}
	case "Event":
		return []column{
			{"Type", func(o runtime.Object) interface{} { return o.(*corev1.Event).Type }},
			{"Reason", func(o runtime.Object) interface{} { return o.(*corev1.Event).Reason }},
			{"Object", func(o runtime.Object) interface{} {
				e := o.(*corev1.Event)
				return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			}},
			{"Message", func(o runtime.Object) interface{} { return o.(*corev1.Event).Message }}}
	}
	return nil
}

func sortStrings(s []string) { sort.Strings(s) }
