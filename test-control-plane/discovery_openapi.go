package main

// Glue between the two servers of the chain (apiextensions-apiserver in front of the
// core server), which kube-aggregator provides in kube-apiserver:
//   - legacy discovery /apis (served by the core server) also lists
//     apiextensions.k8s.io and the groups of established CRDs;
//   - /openapi/v2 and /openapi/v3 (served by the apiextensions server) also describe
//     the built-in types.
// Aggregated discovery needs no glue: both servers share one ResourceManager.

import (
	"sort"
	"sync"

	restful "github.com/emicklei/go-restful/v3"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	builder2 "k8s.io/kube-openapi/pkg/builder"
	builder3 "k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/handler"
)

// crdGroupSync mirrors CRD groups into the core server's legacy /apis list.
type crdGroupSync struct {
	mu      sync.Mutex
	groups  discovery.GroupManager
	lister  apiextensionsinformers.CustomResourceDefinitionInformer
	current map[string]bool
}

func startCRDGroupSync(groups discovery.GroupManager, inf apiextensionsinformers.CustomResourceDefinitionInformer) {
	groups.AddGroup(metav1.APIGroup{
		Name:             "apiextensions.k8s.io",
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: "apiextensions.k8s.io/v1", Version: "v1"}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: "apiextensions.k8s.io/v1", Version: "v1"},
	})
	s := &crdGroupSync{groups: groups, lister: inf, current: map[string]bool{}}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { s.sync() },
		UpdateFunc: func(interface{}, interface{}) { s.sync() },
		DeleteFunc: func(interface{}) { s.sync() },
	})
}

func (s *crdGroupSync) sync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	crds, err := s.lister.Lister().List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "listing CRDs for discovery")
		return
	}
	versions := map[string]map[string]bool{}
	for _, crd := range crds {
		established := false
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				established = true
			}
		}
		if !established {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				if versions[crd.Spec.Group] == nil {
					versions[crd.Spec.Group] = map[string]bool{}
				}
				versions[crd.Spec.Group][v.Name] = true
			}
		}
	}
	next := map[string]bool{}
	for g, vs := range versions {
		var list []metav1.GroupVersionForDiscovery
		for v := range vs {
			list = append(list, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
		}
		sort.Slice(list, func(i, j int) bool {
			return version.CompareKubeAwareVersionStrings(list[i].Version, list[j].Version) > 0
		})
		s.groups.AddGroup(metav1.APIGroup{Name: g, Versions: list, PreferredVersion: list[0]})
		next[g] = true
	}
	for g := range s.current {
		if !next[g] {
			s.groups.RemoveGroup(g)
		}
	}
	s.current = next
}

// mergeOpenAPI adds the core server's routes to the OpenAPI documents the
// apiextensions server serves. Call it after PrepareRun (which builds them) and before
// the post-start hooks run (the CRD OpenAPI controllers start from the static spec).
func mergeOpenAPI(front, core *genericapiserver.GenericAPIServer, v2 *common.Config, v3 *common.OpenAPIV3Config) error {
	frontRoots := map[string]bool{}
	for _, ws := range front.Handler.GoRestfulContainer.RegisteredWebServices() {
		frontRoots[ws.RootPath()] = true
	}
	var extra []*restful.WebService
	for _, ws := range core.Handler.GoRestfulContainer.RegisteredWebServices() {
		if !frontRoots[ws.RootPath()] {
			extra = append(extra, ws)
		}
	}
	all := append(append([]*restful.WebService{}, front.Handler.GoRestfulContainer.RegisteredWebServices()...), extra...)
	spec, err := builder2.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices(all), v2)
	if err != nil {
		return err
	}
	spec.Definitions = handler.PruneDefaults(spec.Definitions)
	*front.StaticOpenAPISpec = *spec
	if err := front.OpenAPIVersionedService.UpdateSpec(front.StaticOpenAPISpec); err != nil {
		return err
	}
	for _, ws := range extra {
		s3, err := builder3.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices([]*restful.WebService{ws}), v3)
		if err != nil {
			return err
		}
		front.OpenAPIV3VersionedService.UpdateGroupVersion(ws.RootPath()[1:], s3)
	}
	return nil
}
