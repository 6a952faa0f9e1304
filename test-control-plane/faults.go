package main

// Fault injection (test hook): rules that make the server answer chosen resource requests with an
// error (429, 500, 503, with Retry-After), add latency, or stall them (accept and never answer for a
// time), for one client identity or for everyone. Managed at run time under /testing/faults:
//   GET     list the rules (with how often each fired)
//   POST    add a rule (JSON faultRule)
//   DELETE  remove every rule (stalled requests are released)
// Requests are counted by the request accounting before a fault is applied, so a test sees every
// attempt a client made.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

type faultRule struct {
	// User is the client identity (certificate CN); empty: every client but the admin.
	User string `json:"user,omitempty"`
	// Verbs (get, list, watch, create, update, patch, apply, delete, ...); empty: all but watch.
	Verbs []string `json:"verbs,omitempty"`
	// Resources (plural, optionally resource/subresource); empty: all.
	Resources []string `json:"resources,omitempty"`
	// Status answered instead of the request: 429, 500 or 503 (0: none).
	Status int `json:"status,omitempty"`
	// RetryAfterSeconds sets Retry-After on a 429/503.
	RetryAfterSeconds int `json:"retryAfterSeconds,omitempty"`
	// DelayMillis delays the request (then it is answered, or fails with Status).
	DelayMillis int `json:"delayMillis,omitempty"`
	// Stall accepts the request and answers nothing until the rule expires or is removed, or the client
	// gives up.
	Stall bool `json:"stall,omitempty"`
	// Probability that a matching request is hit (0 or 1: every one).
	Probability float64 `json:"probability,omitempty"`
	// Count limits the requests hit (0: unlimited).
	Count int `json:"count,omitempty"`
	// Seconds the rule lasts (0: until removed).
	Seconds int `json:"seconds,omitempty"`
}

type activeFault struct {
	rule    faultRule
	until   time.Time // zero: no expiry
	hits    int
	release chan struct{}
}

type faults struct {
	mu    sync.Mutex
	rules []*activeFault
	rng   *rand.Rand
}

func newFaults() *faults {
	return &faults{rng: rand.New(rand.NewSource(time.Now().UnixNano()))}
}

func (f *faults) add(r faultRule) error {
	switch r.Status {
	case 0, 429, 500, 503:
	default:
		return fmt.Errorf("status must be 429, 500 or 503, not %d", r.Status)
	}
	if r.Status == 0 && r.DelayMillis == 0 && !r.Stall {
		return fmt.Errorf("a fault needs status, delayMillis or stall")
	}
	if r.Probability < 0 || r.Probability > 1 {
		return fmt.Errorf("probability must be within 0..1")
	}
	a := &activeFault{rule: r, release: make(chan struct{})}
	if r.Seconds > 0 {
		a.until = time.Now().Add(time.Duration(r.Seconds) * time.Second)
	}
	f.mu.Lock()
	f.rules = append(f.rules, a)
	f.mu.Unlock()
	return nil
}

func (f *faults) clear() {
	f.mu.Lock()
	for _, a := range f.rules {
		close(a.release)
	}
	f.rules = nil
	f.mu.Unlock()
}

type faultView struct {
	faultRule
	Hits int `json:"hits"`
}

func (f *faults) list() []faultView {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []faultView{}
	for _, a := range f.rules {
		out = append(out, faultView{a.rule, a.hits})
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

// pick returns the rule that hits this request (and counts the hit), or nil.
func (f *faults) pick(user, verb, resource string) *activeFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for _, a := range f.rules {
		r := a.rule
		if !a.until.IsZero() && now.After(a.until) {
			continue
		}
		if r.Count > 0 && a.hits >= r.Count {
			continue
		}
		if r.User == "" && user == "admin" || r.User != "" && r.User != user {
			continue
		}
		if len(r.Verbs) == 0 && verb == "watch" || len(r.Verbs) > 0 && !contains(r.Verbs, verb) {
			continue
		}
		if len(r.Resources) > 0 && !contains(r.Resources, resource) {
			continue
		}
		if r.Probability > 0 && r.Probability < 1 && f.rng.Float64() >= r.Probability {
			continue
		}
		a.hits++
		return a
	}
	return nil
}

func statusReason(code int) string {
	switch code {
	case 429:
		return "TooManyRequests"
	case 503:
		return "ServiceUnavailable"
	default:
		return "InternalError"
	}
}

// withFaults applies the fault rules to resource requests.
func withFaults(f *faults, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		info, ok := genericapirequest.RequestInfoFrom(ctx)
		u, uok := genericapirequest.UserFrom(ctx)
		if !ok || !uok || !info.IsResourceRequest {
			next.ServeHTTP(w, r)
			return
		}
		verb := info.Verb
		if verb == "patch" && isApply(r) {
			verb = "apply"
		}
		resource := info.Resource
		if info.Subresource != "" {
			resource += "/" + info.Subresource
		}
		a := f.pick(u.GetName(), verb, resource)
		if a == nil {
			next.ServeHTTP(w, r)
			return
		}
		if a.rule.Stall {
			var expire <-chan time.Time
			if !a.until.IsZero() {
				t := time.NewTimer(time.Until(a.until))
				defer t.Stop()
				expire = t.C
			}
			select {
			case <-ctx.Done():
				return
			case <-a.release:
			case <-expire:
			}
		}
		if a.rule.DelayMillis > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(a.rule.DelayMillis) * time.Millisecond):
			}
		}
		if a.rule.Status != 0 {
			code := a.rule.Status
			if a.rule.RetryAfterSeconds > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(a.rule.RetryAfterSeconds))
			}
			writeJSON(w, code, map[string]interface{}{
				"kind": "Status", "apiVersion": "v1", "metadata": map[string]interface{}{},
				"status": "Failure", "reason": statusReason(code), "code": code,
				"message": fmt.Sprintf("kapi: injected fault (%d)", code),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *testHooks) faults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": h.faultRules.list()})
	case http.MethodDelete:
		h.faultRules.clear()
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": []faultView{}})
	case http.MethodPost:
		var rule faultRule
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rule); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid fault rule: %v", err)})
			return
		}
		if err := h.faultRules.add(rule); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid fault rule: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": h.faultRules.list()})
	default:
		methodNotAllowed(w, "GET, POST, DELETE")
	}
}
