package main

// Request accounting per client identity (for tests: "this sync made no writes"), a log
// of write requests with their client's User-Agent and timing (for tests: "no two
// replicas wrote the same namespace at once"), and the registry of open watches (for
// /testing/expire-watches).
//
// Requests are counted after authentication: allowed ones by the innermost filter of
// the handler chain, denied ones by the authorizer. A server-side apply (PATCH with
// application/apply-patch+yaml) counts as verb "apply" (and as a write).

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

type userCounts struct {
	Total      int64            `json:"total"`
	Writes     int64            `json:"writes"`
	Reads      int64            `json:"reads"`
	ByVerb     map[string]int64 `json:"byVerb"`
	ByResource map[string]int64 `json:"byResource"`
}

func newUserCounts() *userCounts {
	return &userCounts{ByVerb: map[string]int64{}, ByResource: map[string]int64{}}
}

// writeRecord is one write request as the server saw it.
type writeRecord struct {
	User      string `json:"user"`
	UserAgent string `json:"userAgent"`
	Verb      string `json:"verb"`
	// Resource is "group/resource[/subresource]".
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Start and End: when the request entered the handler and when its answer was written (Unix
	// microseconds).
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Code  int   `json:"code"`
}

// maxWrites bounds the write log: past it, the oldest half is dropped.
const maxWrites = 200000

type accounting struct {
	mu     sync.Mutex
	users  map[string]*userCounts
	writes []writeRecord
}

func newAccounting() *accounting { return &accounting{users: map[string]*userCounts{}} }

func (a *accounting) logWrite(w writeRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.writes) >= maxWrites {
		a.writes = append([]writeRecord(nil), a.writes[len(a.writes)/2:]...)
	}
	a.writes = append(a.writes, w)
}

// writesOf returns the logged writes of user (all users when empty), oldest first.
func (a *accounting) writesOf(user string) []writeRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []writeRecord{}
	for _, w := range a.writes {
		if user == "" || w.User == user {
			out = append(out, w)
		}
	}
	return out
}

// statusRecorder remembers the status code an inner handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "apply": true, "delete": true, "deletecollection": true}

func (a *accounting) record(userName, verb, group, resource, subresource string) {
	key := verb + " " + group + "/" + resource
	if subresource != "" {
		key += "/" + subresource
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.users[userName]
	if c == nil {
		c = newUserCounts()
		a.users[userName] = c
	}
	c.Total++
	if writeVerbs[verb] {
		c.Writes++
	} else {
		c.Reads++
	}
	c.ByVerb[verb]++
	c.ByResource[key]++
}

func (a *accounting) snapshot() map[string]*userCounts {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]*userCounts{}
	for u, c := range a.users {
		cp := newUserCounts()
		cp.Total, cp.Writes, cp.Reads = c.Total, c.Writes, c.Reads
		for k, v := range c.ByVerb {
			cp.ByVerb[k] = v
		}
		for k, v := range c.ByResource {
			cp.ByResource[k] = v
		}
		out[u] = cp
	}
	return out
}

func (a *accounting) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users = map[string]*userCounts{}
	a.writes = nil
}

// requestNote travels in the request context from the outermost filter.
type requestNote struct {
	apply   bool
	counted bool
}

type noteKey struct{}

func noteFrom(ctx context.Context) *requestNote {
	n, _ := ctx.Value(noteKey{}).(*requestNote)
	return n
}

func isApply(r *http.Request) bool {
	return r.Method == http.MethodPatch && strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch")
}

// withRequestNote is the outermost filter.
func withRequestNote(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), noteKey{}, &requestNote{apply: isApply(r)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recordDenied counts a request the authorizer refused (first decision only).
func (a *accounting) recordDenied(ctx context.Context, attrs authorizer.Attributes) {
	n := noteFrom(ctx)
	if n == nil || n.counted || !attrs.IsResourceRequest() || attrs.GetUser() == nil {
		return
	}
	n.counted = true
	verb := attrs.GetVerb()
	if verb == "patch" && n.apply {
		verb = "apply"
	}
	a.record(attrs.GetUser().GetName(), verb, attrs.GetAPIGroup(), attrs.GetResource(), attrs.GetSubresource())
}

// withAccounting is the innermost filter: it runs after authentication and
// authorization, counts the request and registers watches.
func withAccounting(a *accounting, watches *watchRegistry, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		info, ok := genericapirequest.RequestInfoFrom(ctx)
		u, uok := genericapirequest.UserFrom(ctx)
		n := noteFrom(ctx)
		if ok && uok && info.IsResourceRequest && (n == nil || !n.counted) {
			if n != nil {
				n.counted = true
			}
			verb := info.Verb
			if verb == "patch" && isApply(r) {
				verb = "apply"
			}
			a.record(u.GetName(), verb, info.APIGroup, info.Resource, info.Subresource)
			if writeVerbs[verb] {
				resource := info.APIGroup + "/" + info.Resource
				if info.Subresource != "" {
					resource += "/" + info.Subresource
				}
				rec := &statusRecorder{ResponseWriter: w}
				start := time.Now()
				next.ServeHTTP(rec, r)
				a.logWrite(writeRecord{
					User: u.GetName(), UserAgent: r.UserAgent(), Verb: verb, Resource: resource,
					Namespace: info.Namespace, Name: info.Name,
					Start: start.UnixMicro(), End: time.Now().UnixMicro(), Code: rec.code,
				})
				return
			}
		}
		if ok && info.IsResourceRequest && info.Verb == "watch" {
			wctx, cancel := context.WithCancel(ctx)
			user := ""
			if uok {
				user = u.GetName()
			}
			id := watches.add(user, cancel)
			defer watches.remove(id)
			defer cancel()
			r = r.WithContext(wctx)
		}
		next.ServeHTTP(w, r)
	})
}

// watchRegistry knows every open watch and who opened it; it can end them all at once.
type watchRegistry struct {
	mu      sync.Mutex
	next    int64
	cancels map[int64]context.CancelFunc
	users   map[int64]string
}

func newWatchRegistry() *watchRegistry {
	return &watchRegistry{cancels: map[int64]context.CancelFunc{}, users: map[int64]string{}}
}

func (w *watchRegistry) add(user string, c context.CancelFunc) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.cancels[w.next] = c
	w.users[w.next] = user
	return w.next
}

func (w *watchRegistry) remove(id int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.cancels, id)
	delete(w.users, id)
}

// open counts the open watches per user.
func (w *watchRegistry) open() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, u := range w.users {
		out[u]++
	}
	return out
}

func (w *watchRegistry) cancelAll() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.cancels)
	for id, c := range w.cancels {
		c()
		delete(w.cancels, id)
		delete(w.users, id)
	}
	return n
}

var _ = types.UID("")
