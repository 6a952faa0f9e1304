package main

// Service IP and NodePort allocation, modelled on kube-apiserver's service REST
// (pkg/registry/core/service/storage): cluster IPs come from --service-cidr, node ports
// from --node-port-range; values a client leaves out on update are carried over from
// the old object (patchAllocatedValues) and clusterIP/clusterIPs are kept consistent
// (normalizeClusterIPs). The allocation state is in memory, rebuilt from etcd at start.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
)

type serviceAllocator struct {
	mu         sync.Mutex
	cidr       *net.IPNet
	base, size uint32 // first usable address and number of usable addresses
	ips        map[string]bool
	portMin    int32
	portMax    int32
	ports      map[int32]bool
}

func newServiceAllocator(cidr, portRange string) (*serviceAllocator, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil || n.IP.To4() == nil {
		return nil, fmt.Errorf("invalid --service-cidr %q (an IPv4 CIDR is required)", cidr)
	}
	ones, bits := n.Mask.Size()
	total := uint32(1) << uint(bits-ones)
	if total < 8 {
		return nil, fmt.Errorf("--service-cidr %q is too small", cidr)
	}
	lo, hi, ok := strings.Cut(portRange, "-")
	pmin, err1 := strconv.Atoi(lo)
	pmax, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || pmin < 1 || pmax > 65535 || pmin > pmax {
		return nil, fmt.Errorf("invalid --node-port-range %q", portRange)
	}
	return &serviceAllocator{
		cidr: n, base: ip4ToUint(n.IP) + 1, size: total - 2, // no network or broadcast address
		ips: map[string]bool{}, portMin: int32(pmin), portMax: int32(pmax), ports: map[int32]bool{},
	}, nil
}

func ip4ToUint(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }
func uintToIP4(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// restore marks the addresses and ports of all stored services as used.
func (a *serviceAllocator) restore(ctx context.Context, store *genericregistry.Store) error {
	obj, err := store.List(genericapirequest.WithNamespace(ctx, ""), &metainternalversion.ListOptions{})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, svc := range obj.(*corev1.ServiceList).Items {
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != corev1.ClusterIPNone {
				a.ips[ip] = true
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				a.ports[p.NodePort] = true
			}
		}
	}
	return nil
}

func (a *serviceAllocator) rangeString() string { return a.cidr.String() }

// allocateIP reserves ip (or a random free address if ip is empty).
func (a *serviceAllocator) allocateIP(ip string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip != "" {
		parsed := net.ParseIP(ip)
		if parsed == nil || parsed.To4() == nil || !a.cidr.Contains(parsed) ||
			ip4ToUint(parsed) < a.base || ip4ToUint(parsed) >= a.base+a.size {
			return "", fmt.Errorf("failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", ip, a.rangeString())
		}
		ip = parsed.To4().String()
		if a.ips[ip] {
			return "", fmt.Errorf("failed to allocate IP %s: provided IP is already allocated", ip)
		}
		a.ips[ip] = true
		return ip, nil
	}
	// Like kube, allocate dynamically from the upper part of the range and keep the
	// first addresses (e.g. .1 for the kubernetes service, .10 for DNS) for static use.
	offset := a.size / 16
	if offset > 256 {
		offset = 256
	}
	if offset < 2 {
		offset = 0
	}
	span := a.size - offset
	start := uint32(rand.Int63n(int64(span)))
	for i := uint32(0); i < a.size; i++ {
		var v uint32
		if i < span {
			v = a.base + offset + (start+i)%span
		} else {
			v = a.base + (i - span) // the static band, only when the dynamic one is full
		}
		if cand := uintToIP4(v).String(); !a.ips[cand] {
			a.ips[cand] = true
			return cand, nil
		}
	}
	return "", fmt.Errorf("failed to allocate a serviceIP: range is full")
}

func (a *serviceAllocator) releaseIP(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ips, ip)
}

func (a *serviceAllocator) allocatePort(port int32) (int32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if port != 0 {
		if port < a.portMin || port > a.portMax {
			return 0, fmt.Errorf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portMin, a.portMax)
		}
		if a.ports[port] {
			return 0, fmt.Errorf("provided port is already allocated")
		}
		a.ports[port] = true
		return port, nil
	}
	span := a.portMax - a.portMin + 1
	start := rand.Int31n(span)
	for i := int32(0); i < span; i++ {
		cand := a.portMin + (start+i)%span
		if !a.ports[cand] {
			a.ports[cand] = true
			return cand, nil
		}
	}
	return 0, fmt.Errorf("range is full")
}

func (a *serviceAllocator) releasePort(port int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ports, port)
}

func needsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func needsNodePort(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// txn collects allocations of one request so they can be undone or committed.
type txn struct {
	a          *serviceAllocator
	ips        []string
	ports      []int32
	releaseIPs []string // released on success (update: no longer used)
	relPorts   []int32
}

func (t *txn) finish(success bool) {
	if success {
		for _, ip := range t.releaseIPs {
			t.a.releaseIP(ip)
		}
		for _, p := range t.relPorts {
			t.a.releasePort(p)
		}
		return
	}
	for _, ip := range t.ips {
		t.a.releaseIP(ip)
	}
	for _, p := range t.ports {
		t.a.releasePort(p)
	}
}

func invalidService(svc *corev1.Service, errs field.ErrorList) error {
	return errors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, errs)
}

// allocateClusterIPs fills spec.clusterIP(s), ipFamilies and ipFamilyPolicy.
func (a *serviceAllocator) allocateClusterIPs(t *txn, svc *corev1.Service) error {
	s := &svc.Spec
	if len(s.ClusterIP) > 0 && len(s.ClusterIPs) == 0 {
		s.ClusterIPs = []string{s.ClusterIP}
	}
	if s.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if s.IPFamilyPolicy == nil {
		s.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicySingleStack)
	}
	if len(s.IPFamilies) == 0 {
		s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.ClusterIP == corev1.ClusterIPNone {
		if len(s.ClusterIPs) == 0 {
			s.ClusterIPs = []string{corev1.ClusterIPNone}
		}
		return nil
	}
	if len(s.ClusterIPs) > 0 && s.ClusterIP != "" && s.ClusterIPs[0] != s.ClusterIP {
		return nil // validation reports the inconsistency
	}
	want := ""
	if len(s.ClusterIPs) > 0 {
		want = s.ClusterIPs[0]
	}
	ip, err := a.allocateIP(want)
	if err != nil {
		return invalidService(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.ClusterIPs, err.Error())})
	}
	t.ips = append(t.ips, ip)
	s.ClusterIP = ip
	s.ClusterIPs = []string{ip}
	return nil
}

// allocateNodePorts gives every port without a nodePort one, and reserves the ones
// the client chose (skipping those in keep, which the service already holds).
func (a *serviceAllocator) allocateNodePorts(t *txn, svc *corev1.Service, keep map[int32]bool) error {
	seen := map[int32]bool{}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 && (keep[p.NodePort] || seen[p.NodePort]) {
			seen[p.NodePort] = true // the same node port for TCP and UDP of one port is fine
			continue
		}
		np, err := a.allocatePort(p.NodePort)
		if err != nil {
			var val interface{} = p.NodePort
			return invalidService(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), val, err.Error())})
		}
		t.ports = append(t.ports, np)
		p.NodePort = np
		seen[np] = true
	}
	return nil
}

func (a *serviceAllocator) beginCreate(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	svc := obj.(*corev1.Service)
	t := &txn{a: a}
	dryRun := len(options.DryRun) > 0
	err := a.allocateClusterIPs(t, svc)
	if err == nil && needsNodePort(svc) {
		err = a.allocateNodePorts(t, svc, nil)
	}
	if err != nil {
		t.finish(false)
		return nil, err
	}
	return func(ctx context.Context, success bool) { t.finish(success && !dryRun) }, nil
}

func nodePortsOf(svc *corev1.Service) map[int32]bool {
	out := map[int32]bool{}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out[p.NodePort] = true
		}
	}
	return out
}

// patchAllocatedValues carries allocated values a client omitted over from the old
// object, as kube-apiserver does (node ports matched by port name).
func patchAllocatedValues(svc, old *corev1.Service) {
	if needsClusterIP(old) && needsClusterIP(svc) {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		}
		if len(svc.Spec.ClusterIPs) == 0 && len(old.Spec.ClusterIPs) > 0 {
			svc.Spec.ClusterIPs = old.Spec.ClusterIPs
		}
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.Type != corev1.ServiceTypeExternalName {
		if svc.Spec.IPFamilyPolicy == nil {
			svc.Spec.IPFamilyPolicy = old.Spec.IPFamilyPolicy
		}
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = old.Spec.IPFamilies
		}
	}
	if needsNodePort(old) && needsNodePort(svc) {
		newUsed := nodePortsOf(svc)
		used := map[int32]bool{}
		for p := range nodePortsOf(old) {
			if newUsed[p] {
				used[p] = true
			}
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort == 0 {
				if v := byName[p.Name]; v != 0 && !used[v] {
					p.NodePort = v
				}
			}
		}
	}
	if svc.Spec.HealthCheckNodePort == 0 && old.Spec.HealthCheckNodePort != 0 &&
		svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

func sameClusterIPs(a, b *corev1.Service) bool {
	if len(a.Spec.ClusterIPs) != len(b.Spec.ClusterIPs) {
		return false
	}
	for i := range a.Spec.ClusterIPs {
		if a.Spec.ClusterIPs[i] != b.Spec.ClusterIPs[i] {
			return false
		}
	}
	return true
}

// normalizeClusterIPs keeps clusterIP and clusterIPs in sync on update.
func normalizeClusterIPs(svc, old *corev1.Service) {
	if len(old.Spec.ClusterIPs) > 0 && len(svc.Spec.ClusterIPs) == 0 && old.Spec.ClusterIP == svc.Spec.ClusterIP {
		svc.Spec.ClusterIPs = old.Spec.ClusterIPs
	}
	if old.Spec.ClusterIP != svc.Spec.ClusterIP {
		if len(old.Spec.ClusterIP) > 0 && len(svc.Spec.ClusterIP) == 0 {
			if sameClusterIPs(old, svc) {
				svc.Spec.ClusterIPs = nil
			}
		} else if sameClusterIPs(old, svc) {
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
	}
}

func (a *serviceAllocator) beginUpdate(ctx context.Context, obj, oldObj runtime.Object, options *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	svc, old := obj.(*corev1.Service), oldObj.(*corev1.Service)
	dryRun := len(options.DryRun) > 0
	patchAllocatedValues(svc, old)
	normalizeClusterIPs(svc, old)
	t := &txn{a: a}
	var err error
	switch {
	case needsClusterIP(svc) && !needsClusterIP(old):
		err = a.allocateClusterIPs(t, svc)
	case !needsClusterIP(svc) && needsClusterIP(old):
		t.releaseIPs = append(t.releaseIPs, old.Spec.ClusterIPs...)
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = nil, nil
		}
	}
	if err == nil {
		oldPorts := map[int32]bool{}
		if needsNodePort(old) {
			oldPorts = nodePortsOf(old)
		}
		if needsNodePort(svc) {
			err = a.allocateNodePorts(t, svc, oldPorts)
		}
		if err == nil {
			stillUsed := map[int32]bool{}
			if needsNodePort(svc) {
				stillUsed = nodePortsOf(svc)
			}
			for p := range oldPorts {
				if !stillUsed[p] {
					t.relPorts = append(t.relPorts, p)
				}
			}
		}
	}
	if err != nil {
		t.finish(false)
		return nil, err
	}
	return func(ctx context.Context, success bool) {
		if dryRun {
			t.finish(false)
			return
		}
		t.finish(success)
	}, nil
}

func (a *serviceAllocator) afterDelete(obj runtime.Object, options *metav1.DeleteOptions) {
	svc, ok := obj.(*corev1.Service)
	if !ok || (options != nil && len(options.DryRun) > 0) {
		return
	}
	for _, ip := range svc.Spec.ClusterIPs {
		if ip != corev1.ClusterIPNone {
			a.releaseIP(ip)
		}
	}
	for p := range nodePortsOf(svc) {
		a.releasePort(p)
	}
}
