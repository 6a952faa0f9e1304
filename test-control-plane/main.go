// Command kapi is a local Kubernetes API server for dr-syncer's tests.
//
// It wires the Kubernetes server libraries (k8s.io/apiserver, apiextensions-apiserver,
// embedded etcd) into one process that behaves like kube-apiserver for API machinery,
// and adds, in our own code, the type-specific behaviour a DR syncer depends on
// (defaulting, validation, namespace lifecycle, garbage collection, eviction) plus
// test hooks (request accounting, forced watch expiry, a deny list), and optionally
// enforces RBAC. Clients authenticate with client certificates or bearer tokens that
// kapi mints (tokens.go). See README.md.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  kapi serve --dir DIR [--secure-port 0] [--bind-address 127.0.0.1] [--simulate-workloads]
             [--deny USER:VERBS:RESOURCES]... [--authorization-mode AlwaysAllow|RBAC]
             [--service-cidr 10.96.0.0/16]
             [--node-port-range 30000-32767] [--exit-with-parent] [-v N]
  kapi kubeconfig --dir DIR --user CN [--group G]... [--out FILE]
  kapi token --dir DIR --user NAME [--group G]...
  kapi version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "kubeconfig":
		err = runKubeconfig(os.Args[2:])
	case "token":
		err = runToken(os.Args[2:])
	case "version", "--version":
		fmt.Println(versionString())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "kapi: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kapi: %v\n", err)
		os.Exit(1)
	}
}
