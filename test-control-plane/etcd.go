package main

// Embedded etcd: data in DIR/etcd, fsync off, client and peer listeners on loopback
// ports chosen by the kernel (port 0), so that many instances can run side by side.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

type etcdServer struct {
	e         *embed.Etcd
	clientURL string
}

func startEtcd(stateDir string, verbosity int) (*etcdServer, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kapi"
	cfg.Dir = filepath.Join(stateDir, "etcd")
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	if verbosity >= 6 {
		cfg.LogLevel = "info"
	}
	cfg.LogOutputs = []string{"stderr"}
	// Port 0: the kernel picks a free port, so parallel instances never collide.
	// The peer URL is only ever used by this single member.
	u, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*u}
	cfg.AdvertiseClientUrls = []url.URL{*u}
	cfg.ListenPeerUrls = []url.URL{*u}
	cfg.AdvertisePeerUrls = []url.URL{*u}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	// The apiserver compacts etcd itself (and /testing/expire-watches does it on demand).
	cfg.AutoCompactionRetention = "0"
	cfg.QuotaBackendBytes = 2 << 30
	cfg.MaxRequestBytes = 3 << 20
	// A single member on loopback: short raft timers make a restart elect itself
	// leader in ~0.1s instead of 1-2s.
	cfg.TickMs = 10
	cfg.ElectionMs = 100

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd did not become ready within 60s")
	}
	return &etcdServer{e: e, clientURL: "http://" + e.Clients[0].Addr().String()}, nil
}

func (s *etcdServer) Close() {
	if s != nil && s.e != nil {
		s.e.Close()
	}
}
