package main

// Server wiring, as kube-apiserver chains its servers (minus the aggregator):
// apiextensions-apiserver (CRDs, custom resources, /openapi) delegates to a core
// GenericAPIServer (the built-in types, /api, /apis), which delegates to 404.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	extapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	extoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	extopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	authenticatorunion "k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/tracing"
	"k8s.io/kube-openapi/pkg/common"

	generatedopenapi "kapi/generated/openapi"
)

type servers struct {
	front    *extapiserver.CustomResourceDefinitions
	core     *genericapiserver.GenericAPIServer
	v2       *common.Config
	v3       *common.OpenAPIV3Config
	informer informers.SharedInformerFactory
	client   kubernetes.Interface
}

func openAPIDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	defs := generatedopenapi.GetOpenAPIDefinitions(ref)
	for k, v := range extopenapi.GetOpenAPIDefinitions(ref) {
		defs[k] = v
	}
	return defs
}

func buildServers(o *serveOptions, ln net.Listener, pki pkiPaths, etcdURL string, reg *registry, hooks *testHooks) (*servers, error) {
	effective := compatibility.DefaultBuildEffectiveVersion()
	cfg := genericapiserver.NewRecommendedConfig(Codecs)
	cfg.EffectiveVersion = effective
	cfg.FeatureGate = utilfeature.DefaultFeatureGate
	cfg.EnableProfiling = false
	cfg.ShutdownWatchTerminationGracePeriod = 0
	cfg.ShutdownDelayDuration = 0
	cfg.MinRequestTimeout = 1800
	// As kube-apiserver: watches and pods/log (which may follow) are not cut off by the request timeout.
	cfg.LongRunningFunc = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch", "proxy"),
		sets.NewString("attach", "exec", "proxy", "log", "portforward"))
	cfg.ExternalAddress = net.JoinHostPort("127.0.0.1", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))

	// Serving on our listener, with the serving certificate of DIR/pki.
	sso := genericoptions.NewSecureServingOptions().WithLoopback()
	sso.Listener = ln
	sso.BindPort = ln.Addr().(*net.TCPAddr).Port
	sso.ServerCert.CertKey = genericoptions.CertKey{CertFile: pki.servingCert(), KeyFile: pki.servingKey()}
	sso.HTTP2MaxStreamsPerConnection = 1000
	if err := sso.ApplyToConfig(&cfg.Config); err != nil {
		return nil, fmt.Errorf("secure serving: %w", err)
	}

	// Client certificates against DIR's CA; user = CN, groups = O. No anonymous access.
	caPEM, err := os.ReadFile(pki.caCert())
	if err != nil {
		return nil, err
	}
	ca, err := dynamiccertificates.NewStaticCAContent("client-ca", caPEM)
	if err != nil {
		return nil, err
	}
	if err := cfg.Authentication.ApplyClientCert(ca, cfg.SecureServing); err != nil {
		return nil, err
	}
	// Then bearer tokens minted into DIR/tokens.csv (tokens.go): those of `kapi token`
	// audience-agnostic like kube-apiserver's static token file, those of TokenRequest
	// checked like its service account tokens; an unknown token is 401.
	cfg.Authentication.APIAudiences = apiAudiences
	cfg.Authentication.Authenticator = authenticatorunion.New(
		x509request.NewDynamic(ca.VerifyOptions, x509request.CommonNameUserConversion),
		bearertoken.New(hooks.tokens))
	if o.authzMode == authzRBAC {
		// As kube-apiserver: system:authenticated, and the ServiceAccount groups.
		cfg.Authentication.Authenticator = withKubeGroups(cfg.Authentication.Authenticator)
	}
	cfg.Authorization.Authorizer = reg.authz
	genericapiserver.AuthorizeClientBearerToken(cfg.LoopbackClientConfig, &cfg.Authentication, &cfg.Authorization)
	// TokenReview answers from the same chain (with the loopback token), as in kube-apiserver.
	reg.authn, reg.apiAudiences = cfg.Authentication.Authenticator, cfg.Authentication.APIAudiences

	// etcd, without the watch cache: watches are served by etcd itself, so compaction
	// (/testing/expire-watches) reaches them.
	etcdOpts := genericoptions.NewEtcdOptions(storagebackend.NewDefaultConfig("/registry", nil))
	etcdOpts.StorageConfig.Transport.ServerList = []string{etcdURL}
	etcdOpts.EnableWatchCache = false
	etcdOpts.DefaultStorageMediaType = runtime.ContentTypeProtobuf
	etcdOpts.StorageConfig.CountMetricPollPeriod = 0
	resourceConfig := serverstorage.NewResourceConfig()
	for _, gv := range Scheme.PrioritizedVersionsAllGroups() {
		resourceConfig.EnableVersions(gv)
	}
	storageFactory := serverstorage.NewDefaultStorageFactory(etcdOpts.StorageConfig, etcdOpts.DefaultStorageMediaType, Codecs,
		serverstorage.NewDefaultResourceEncodingConfigForEffectiveVersion(Scheme, effective), resourceConfig, nil)
	if err := etcdOpts.ApplyWithStorageFactoryTo(storageFactory, &cfg.Config); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	cfg.MergedResourceConfig = resourceConfig

	// Loopback clients for informers, admission and our controllers.
	loopback := cfg.LoopbackClientConfig
	loopback.QPS, loopback.Burst = -1, -1
	client, err := kubernetes.NewForConfig(loopback)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(loopback)
	if err != nil {
		return nil, err
	}
	cfg.ClientConfig = loopback
	cfg.SharedInformerFactory = informers.NewSharedInformerFactory(client, 10*time.Minute)
	if o.authzMode == authzRBAC {
		// Roles and bindings come from informers on the loopback client, whose user is in
		// system:masters: the authorizer never waits on the server's own requests.
		reg.authz.rbac = newRBACAuthorizer(cfg.SharedInformerFactory)
	}

	// Admission: NamespaceLifecycle and the webhooks (as kube-apiserver); not the
	// admission policies, whose API we do not serve.
	adm := genericoptions.NewAdmissionOptions()
	adm.DisablePlugins = []string{"ValidatingAdmissionPolicy", "MutatingAdmissionPolicy"}
	if err := adm.ApplyTo(&cfg.Config, cfg.SharedInformerFactory, client, dyn, utilfeature.DefaultFeatureGate, effective); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}

	// OpenAPI of built-ins (generated at build time) plus apiextensions.
	namer := openapinamer.NewDefinitionNamer(externalScheme, extapiserver.Scheme)
	defs := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(openAPIDefinitions)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	cfg.OpenAPIConfig.Info.Title = "Kubernetes"
	cfg.OpenAPIConfig.Info.Version = effective.Info().GitVersion
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	cfg.OpenAPIV3Config.Info.Title = "Kubernetes"
	cfg.OpenAPIV3Config.Info.Version = effective.Info().GitVersion

	cfg.BuildHandlerChainFunc = func(apiHandler http.Handler, c *genericapiserver.Config) http.Handler {
		return withRequestNote(genericapiserver.DefaultBuildHandlerChain(withAccounting(hooks.acct, hooks.watches, withFaults(hooks.faultRules, apiHandler)), c))
	}

	// The apiextensions server shares everything but storage and API enablement.
	extGeneric := *cfg
	extGeneric.PostStartHooks = map[string]genericapiserver.PostStartHookConfigEntry{}
	extGeneric.RESTOptionsGetter = nil
	extEtcd := *etcdOpts
	extEtcd.StorageConfig.Codec = extapiserver.Codecs.LegacyCodec(apiextensionsv1beta1.SchemeGroupVersion, apiextensionsv1.SchemeGroupVersion)
	extEtcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(apiextensionsv1beta1.SchemeGroupVersion,
		schema.GroupKind{Group: apiextensionsv1beta1.GroupName})
	extEtcd.SkipHealthEndpoints = true
	if err := extEtcd.ApplyTo(&extGeneric.Config); err != nil {
		return nil, err
	}
	extGeneric.MergedResourceConfig = extapiserver.DefaultAPIResourceConfigSource()

	// Core server first (it is the delegate).
	cfg.SkipOpenAPIInstallation = true
	core, err := cfg.Complete().New("kapi-core", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	if err := reg.installBuiltins(core, cfg.RESTOptionsGetter); err != nil {
		return nil, err
	}
	// TokenRequest tokens are valid while their ServiceAccount exists.
	hooks.tokens.setServiceAccounts(reg.stores[schema.GroupResource{Resource: "serviceaccounts"}])

	extGeneric.AggregatedDiscoveryGroupManager = core.AggregatedDiscoveryGroupManager
	extCfg := &extapiserver.Config{
		GenericConfig: &extGeneric,
		ExtraConfig: extapiserver.ExtraConfig{
			CRDRESTOptionsGetter: extoptions.NewCRDRESTOptionsGetter(extEtcd, extGeneric.ResourceTransformers, extGeneric.StorageObjectCountTracker),
			MasterCount:          1,
			ServiceResolver:      webhook.NewDefaultServiceResolver(),
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, loopback, tracing.NewNoopTracerProvider()),
		},
	}
	front, err := extCfg.Complete().New(core)
	if err != nil {
		return nil, err
	}
	startCRDGroupSync(core.DiscoveryGroupManager, front.Informers.Apiextensions().V1().CustomResourceDefinitions())
	hooks.install(front.GenericAPIServer.Handler.NonGoRestfulMux)
	return &servers{front: front, core: core, v2: cfg.OpenAPIConfig, v3: cfg.OpenAPIV3Config,
		informer: cfg.SharedInformerFactory, client: client}, nil
}
