package main

import (
	"fmt"

	"k8s.io/component-base/version"
)

// versionString reports the Kubernetes library version we were built from; the build
// script sets it with -ldflags -X k8s.io/component-base/version.gitVersion=... .
func versionString() string {
	v := version.Get()
	return fmt.Sprintf("kapi %s (built %s, %s %s)", v.GitVersion, v.BuildDate, v.GoVersion, v.Platform)
}
