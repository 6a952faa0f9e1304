package main

// pods/log, shaped like kube-apiserver's LogREST (a rest.GetterWithOptions taking
// PodLogOptions and returning a rest.ResourceStreamer). There is no kubelet to proxy
// to: the log of container C of pod P in namespace N is the file
// <--pod-log-dir>/N/P/C.log, written by whoever plays the kubelet in a test.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

// podLogPollInterval is how often a follow request looks for appended data.
const podLogPollInterval = 200 * time.Millisecond

type podLogREST struct {
	pods *genericregistry.Store
	dir  string
}

var _ rest.GetterWithOptions = &podLogREST{}
var _ rest.StorageMetadata = &podLogREST{}

func (r *podLogREST) New() runtime.Object { return &corev1.Pod{} }
func (r *podLogREST) Destroy()            {}

// ProducesMIMETypes and ProducesObject describe the plain-text answer in OpenAPI.
func (r *podLogREST) ProducesMIMETypes(verb string) []string { return []string{"text/plain"} }
func (r *podLogREST) ProducesObject(verb string) interface{} { return "" }

func (r *podLogREST) NewGetOptions() (runtime.Object, bool, string) {
	return &corev1.PodLogOptions{}, false, ""
}

func (r *podLogREST) Get(ctx context.Context, name string, opts runtime.Object) (runtime.Object, error) {
	logOpts, ok := opts.(*corev1.PodLogOptions)
	if !ok {
		return nil, errors.NewBadRequest(fmt.Sprintf("invalid options object: %#v", opts))
	}
	if logOpts.TailLines != nil && *logOpts.TailLines < 0 {
		return nil, errors.NewBadRequest("tailLines: must be greater than or equal to 0")
	}
	if logOpts.LimitBytes != nil && *logOpts.LimitBytes < 1 {
		return nil, errors.NewBadRequest("limitBytes: must be greater than 0")
	}
	obj, err := r.pods.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pod := obj.(*corev1.Pod)
	container, err := logContainer(pod, logOpts.Container)
	if err != nil {
		return nil, err
	}
	if r.dir == "" {
		return nil, errors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", container, pod.Name))
	}
	path := filepath.Join(r.dir, pod.Namespace, pod.Name, container+".log")
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", container, pod.Name))
		}
		return nil, errors.NewInternalError(err)
	}
	var start int64
	if logOpts.TailLines != nil {
		start, err = tailOffset(f, *logOpts.TailLines)
		if err != nil {
			f.Close()
			return nil, errors.NewInternalError(err)
		}
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		f.Close()
		return nil, errors.NewInternalError(err)
	}
	limit := int64(-1)
	if logOpts.LimitBytes != nil {
		limit = *logOpts.LimitBytes
	}
	namespace, podName, uid := pod.Namespace, pod.Name, pod.UID
	return &podLogStreamer{
		file:   f,
		follow: logOpts.Follow,
		limit:  limit,
		podDone: func(ctx context.Context) bool {
			// The streaming context is the request's, without the namespace the handler added.
			obj, err := r.pods.Get(genericapirequest.WithNamespace(ctx, namespace), podName, &metav1.GetOptions{})
			if err != nil {
				return errors.IsNotFound(err)
			}
			p := obj.(*corev1.Pod)
			return p.Namespace != namespace || p.UID != uid || isTerminal(p)
		},
	}, nil
}

// logContainer picks the container whose log is asked for, with kube's messages.
func logContainer(pod *corev1.Pod, name string) (string, error) {
	var names, initNames []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	if name == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %s", pod.Name, names)
		if len(initNames) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %s", initNames)
		}
		return "", errors.NewBadRequest(msg)
	}
	for _, n := range append(names, initNames...) {
		if n == name {
			return name, nil
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return name, nil
		}
	}
	return "", errors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

// tailOffset is the offset of the start of the last n lines of f.
func tailOffset(f *os.File, n int64) (int64, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return int64(len(data)), nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end-- // the final newline ends the last line
	}
	for i := int64(0); i < n; i++ {
		idx := bytes.LastIndexByte(data[:end], '\n')
		if idx < 0 {
			return 0, nil
		}
		end = idx
	}
	return int64(end + 1), nil
}

// podLogStreamer streams a log file; with follow, it keeps polling for appended data
// until the request ends or the pod is gone or finished and everything was read.
type podLogStreamer struct {
	file    *os.File
	follow  bool
	limit   int64 // -1: unlimited
	podDone func(ctx context.Context) bool
}

var _ rest.ResourceStreamer = &podLogStreamer{}

func (s *podLogStreamer) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (s *podLogStreamer) DeepCopyObject() runtime.Object {
	panic("podLogStreamer does not implement DeepCopyObject")
}

func (s *podLogStreamer) InputStream(ctx context.Context, apiVersion, acceptHeader string) (io.ReadCloser, bool, string, error) {
	return &podLogReader{ctx: ctx, s: s, remaining: s.limit}, s.follow, "text/plain", nil
}

type podLogReader struct {
	ctx       context.Context
	s         *podLogStreamer
	remaining int64
}

func (r *podLogReader) Read(p []byte) (int, error) {
	if r.remaining == 0 {
		return 0, io.EOF
	}
	if r.remaining > 0 && int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	for {
		n, err := r.s.file.Read(p)
		if n > 0 {
			if r.remaining > 0 {
				r.remaining -= int64(n)
			}
			return n, nil
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		if !r.s.follow {
			return 0, io.EOF
		}
		// At the end of the file: finished once the pod is; else wait for more.
		if r.s.podDone(r.ctx) {
			n, _ := r.s.file.Read(p) // data written just before the pod finished
			if n > 0 {
				if r.remaining > 0 {
					r.remaining -= int64(n)
				}
				return n, nil
			}
			return 0, io.EOF
		}
		select {
		case <-r.ctx.Done():
			return 0, io.EOF
		case <-time.After(podLogPollInterval):
		}
	}
}

func (r *podLogReader) Close() error { return r.s.file.Close() }

// podLogOptionsFromQuery decodes the query parameters of a pods/log request (kube
// generates this conversion in k8s.io/kubernetes, which Debian does not package).
func podLogOptionsFromQuery(a, b interface{}, _ conversion.Scope) error {
	q := *(a.(*url.Values))
	out := b.(*corev1.PodLogOptions)
	boolean := func(key string) (bool, error) {
		v := q.Get(key)
		if v == "" {
			return false, nil
		}
		return strconv.ParseBool(v)
	}
	integer := func(key string) (*int64, error) {
		v := q.Get(key)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errors.NewBadRequest(fmt.Sprintf("%s: invalid integer %q", key, v))
		}
		return &n, nil
	}
	var err error
	out.Container = q.Get("container")
	if out.Follow, err = boolean("follow"); err != nil {
		return err
	}
	if out.Previous, err = boolean("previous"); err != nil {
		return err
	}
	if out.Timestamps, err = boolean("timestamps"); err != nil {
		return err
	}
	if out.InsecureSkipTLSVerifyBackend, err = boolean("insecureSkipTLSVerifyBackend"); err != nil {
		return err
	}
	if out.SinceSeconds, err = integer("sinceSeconds"); err != nil {
		return err
	}
	if out.TailLines, err = integer("tailLines"); err != nil {
		return err
	}
	if out.LimitBytes, err = integer("limitBytes"); err != nil {
		return err
	}
	return nil
}
