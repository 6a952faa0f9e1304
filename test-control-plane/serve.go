package main

// `kapi serve` and `kapi kubeconfig`: flags, start-up order, readiness files,
// shutdown on SIGTERM/SIGINT or when the parent process dies.

import (
	"context"
	"encoding/json"
	goflag "flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
)

type serveOptions struct {
	dir            string
	securePort     int
	bindAddress    string
	simulate       bool
	denies         []string
	authzMode      string
	serviceCIDR    string
	nodePortRange  string
	exitWithParent bool
	verbosity      int
	podLogDir      string
}

type readyInfo struct {
	URL        string `json:"url"`
	Port       int    `json:"port"`
	PID        int    `json:"pid"`
	Kubeconfig string `json:"kubeconfig"`
}

// setupLogging keeps klog quiet (errors only) unless -v N is given.
func setupLogging(v int) {
	fs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(v))
	if v == 0 {
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("alsologtostderr", "false")
		_ = fs.Set("stderrthreshold", "ERROR")
		klog.SetOutput(io.Discard)
	} else {
		_ = fs.Set("logtostderr", "true")
	}
}

func listenError(addr string, err error) error {
	reason := err.Error()
	var se *os.SyscallError
	if ne, ok := err.(*net.OpError); ok {
		if s, ok := ne.Err.(*os.SyscallError); ok {
			se = s
		}
	}
	if se != nil {
		reason = se.Err.Error()
	}
	return fmt.Errorf("cannot listen on %s: %s", addr, reason)
}

func runServe(args []string) error {
	o := &serveOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "state directory (pki, etcd data, kubeconfig, ready.json)")
	fs.IntVar(&o.securePort, "secure-port", 0, "HTTPS port (0 = pick a free port)")
	fs.StringVar(&o.bindAddress, "bind-address", "127.0.0.1", "address to listen on")
	fs.BoolVar(&o.simulate, "simulate-workloads", false, "mark Deployments/StatefulSets/DaemonSets/ReplicaSets as rolled out")
	fs.StringArrayVar(&o.denies, "deny", nil, "deny rule USER:VERB[,VERB]:RESOURCE[,RESOURCE] (repeatable)")
	fs.StringVar(&o.authzMode, "authorization-mode", authzAlwaysAllow, "AlwaysAllow (everything but the deny list) or RBAC (system:masters and RBAC rules, minus the deny list)")
	fs.StringVar(&o.serviceCIDR, "service-cidr", "10.96.0.0/16", "range of Service cluster IPs")
	fs.StringVar(&o.nodePortRange, "node-port-range", "30000-32767", "range of Service node ports")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false, "exit when the parent process dies")
	fs.StringVar(&o.podLogDir, "pod-log-dir", "", "directory of container logs served by pods/log (DIR/<namespace>/<pod>/<container>.log)")
	fs.IntVarP(&o.verbosity, "v", "v", 0, "log verbosity (klog)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.dir == "" {
		return fmt.Errorf("serve: --dir is required")
	}
	if o.authzMode != authzAlwaysAllow && o.authzMode != authzRBAC {
		return fmt.Errorf("serve: invalid --authorization-mode %q: want %s or %s", o.authzMode, authzAlwaysAllow, authzRBAC)
	}
	setupLogging(o.verbosity)
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	o.dir = dir
	if o.podLogDir != "" {
		if o.podLogDir, err = filepath.Abs(o.podLogDir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := lockStateDir(dir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "ready.json"))

	authz := &denyAuthorizer{}
	for _, d := range o.denies {
		r, err := parseDenyFlag(d)
		if err != nil {
			return err
		}
		authz.add(r)
	}
	alloc, err := newServiceAllocator(o.serviceCIDR, o.nodePortRange)
	if err != nil {
		return err
	}

	// Bind first, so a busy port fails at once.
	addr := net.JoinHostPort(o.bindAddress, strconv.Itoa(o.securePort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError(addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port

	pki, err := ensurePKI(dir)
	if err != nil {
		return fmt.Errorf("creating certificates in %s: %w", dir, err)
	}
	setupScheme()

	etcd, err := startEtcd(dir, o.verbosity)
	if err != nil {
		return err
	}
	defer etcd.Close()
	etcdClient := v3client.New(etcd.e.Server)
	defer etcdClient.Close()

	acct := newAccounting()
	authz.acct = acct
	hooks := &testHooks{acct: acct, watches: newWatchRegistry(), authz: authz, etcd: etcdClient, faultRules: newFaults(),
		tokens: newTokenStore(dir)}
	reg := &registry{stores: map[schema.GroupResource]*genericregistry.Store{}, services: alloc, authz: authz, podLogDir: o.podLogDir,
		tokens: hooks.tokens}
	srv, err := buildServers(o, ln, pki, etcd.clientURL, reg, hooks)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startedAt := time.Now()
	addPostStartHooks(srv, reg, o)

	prepared := srv.front.GenericAPIServer.PrepareRun()
	if err := mergeOpenAPI(srv.front.GenericAPIServer, srv.core, srv.v2, srv.v3); err != nil {
		return fmt.Errorf("merging OpenAPI: %w", err)
	}

	runErr := make(chan error, 1)
	go func() { runErr <- prepared.RunWithContext(ctx) }()

	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	go func() {
		if err := waitReady(ctx, srv); err != nil {
			return
		}
		if err := writeReadyFiles(dir, pki, url, port); err != nil {
			klog.ErrorS(err, "writing ready files")
			cancel()
			return
		}
		if o.verbosity > 0 {
			klog.InfoS("kapi ready", "url", url, "after", time.Since(startedAt))
		}
	}()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	parentGone := make(chan struct{})
	if o.exitWithParent {
		go watchParent(parentGone)
	}
	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
		return nil
	case s := <-sigs:
		klog.V(1).InfoS("shutting down", "signal", s)
	case <-parentGone:
		klog.V(1).InfoS("parent process exited; shutting down")
	}
	cancel()
	_ = os.Remove(filepath.Join(dir, "ready.json"))
	select {
	case <-runErr:
	case <-time.After(5 * time.Second):
	case <-sigs: // a second signal: stop waiting
	}
	return nil
}

// stateDirLock stays open (and locked) for the life of the process.
var stateDirLock *os.File

// lockStateDir refuses a state directory another kapi is serving from (etcd would
// otherwise wait forever for its database lock).
func lockStateDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "kapi.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		other, _ := os.ReadFile(filepath.Join(dir, "kapi.lock"))
		f.Close()
		return fmt.Errorf("state directory %s is in use by another kapi (pid %s)", dir, strings.TrimSpace(string(other)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	stateDirLock = f
	return nil
}

func watchParent(gone chan<- struct{}) {
	ppid := os.Getppid()
	for {
		time.Sleep(250 * time.Millisecond)
		if os.Getppid() != ppid {
			close(gone)
			return
		}
	}
}

// addPostStartHooks: bootstrap namespaces, rebuild the service allocator, start the
// controllers.
func addPostStartHooks(srv *servers, reg *registry, o *serveOptions) {
	s := srv.front.GenericAPIServer // the server that runs; delegates' hooks were copied at construction
	s.AddPostStartHookOrDie("kapi-service-allocator", func(hc genericapiserver.PostStartHookContext) error {
		return reg.services.restore(hc, reg.stores[corev1.Resource("services")])
	})
	s.AddPostStartHookOrDie("kapi-bootstrap-namespaces", func(hc genericapiserver.PostStartHookContext) error {
		for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			for {
				_, err := srv.client.CoreV1().Namespaces().Create(hc, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				if err == nil || errors.IsAlreadyExists(err) {
					break
				}
				select {
				case <-hc.Done():
					return nil
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		return nil
	})
	if rbac := reg.authz.rbac; rbac != nil {
		// Ready only once the RBAC informers have listed every role and binding.
		s.AddPostStartHookOrDie("kapi-rbac-informers", func(hc genericapiserver.PostStartHookContext) error {
			if !cache.WaitForCacheSync(hc.Done(), rbac.synced...) {
				return fmt.Errorf("RBAC informers did not sync")
			}
			return nil
		})
	}
	s.AddPostStartHookOrDie("kapi-controllers", func(hc genericapiserver.PostStartHookContext) error {
		loopback := *hc.LoopbackClientConfig
		loopback.QPS, loopback.Burst = -1, -1
		meta, err := metadata.NewForConfig(&loopback)
		if err != nil {
			return err
		}
		nsc := newNamespaceController(srv.client, meta, srv.informer.Core().V1().Namespaces())
		pgc := newPodGC(srv.client, srv.informer.Core().V1().Pods(), srv.informer.Core().V1().Nodes())
		var sim *workloadSimulator
		if o.simulate {
			sim = newWorkloadSimulator(srv.client, srv.informer)
		}
		srv.informer.Start(hc.Done())
		go nsc.run(hc)
		go pgc.run(hc)
		go newGarbageCollector(meta, srv.client.Discovery()).run(hc)
		if sim != nil {
			go sim.run(hc)
		}
		return nil
	})
}

// waitReady polls /readyz over loopback and checks the bootstrap namespaces.
func waitReady(ctx context.Context, srv *servers) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		body, err := srv.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			continue
		}
		ok := true
		for _, n := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			if _, err := srv.client.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{}); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
	}
}

func writeReadyFiles(dir string, pki pkiPaths, url string, port int) error {
	kc, err := adminKubeconfig(pki, url)
	if err != nil {
		return err
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := writeFileAtomic(kcPath, kc, 0o600); err != nil {
		return err
	}
	data, _ := json.Marshal(readyInfo{URL: url, Port: port, PID: os.Getpid(), Kubeconfig: kcPath})
	return writeFileAtomic(filepath.Join(dir, "ready.json"), append(data, '\n'), 0o644)
}

func runKubeconfig(args []string) error {
	fs := pflag.NewFlagSet("kubeconfig", pflag.ContinueOnError)
	dir := fs.String("dir", "", "state directory of a started server")
	user := fs.String("user", "", "user name (certificate CN)")
	groups := fs.StringArray("group", nil, "group (certificate O), repeatable; default system:masters; --group '' for none")
	out := fs.String("out", "", "write to FILE instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *user == "" {
		return fmt.Errorf("kubeconfig: --dir and --user are required")
	}
	if len(*groups) == 0 {
		*groups = []string{"system:masters"}
	}
	var orgs []string // --group '' alone: a certificate without groups
	for _, g := range *groups {
		if g != "" {
			orgs = append(orgs, g)
		}
	}
	raw, err := os.ReadFile(filepath.Join(*dir, "ready.json"))
	if err != nil {
		return fmt.Errorf("kubeconfig: reading %s/ready.json (is the server running?): %w", *dir, err)
	}
	var ri readyInfo
	if err := json.Unmarshal(raw, &ri); err != nil {
		return fmt.Errorf("kubeconfig: parsing ready.json: %w", err)
	}
	kc, err := mintKubeconfig(*dir, ri.URL, *user, orgs)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(kc)
		return err
	}
	return writeFileAtomic(*out, kc, 0o600)
}
