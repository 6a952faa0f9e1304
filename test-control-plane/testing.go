package main

// Test hooks served under /testing (authenticated, any user; not counted):
//   GET  /testing/requests[?user=CN]   request counts per client identity
//   POST /testing/requests/reset       clear the counts (and the write log)
//   GET  /testing/writes[?user=CN]     write requests with User-Agent and timing, oldest first
//   POST /testing/expire-watches       compact etcd and end every open watch
//   GET  /testing/watches[?user=CN]    open watches per client identity
//   GET|POST|DELETE /testing/deny      list / add / clear deny rules
//   GET|POST|DELETE /testing/faults    list / add / clear fault rules (faults.go)
//   POST /testing/tokens               mint a bearer token (tokens.go)

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apiserver/pkg/server/mux"
)

type testHooks struct {
	acct    *accounting
	watches *watchRegistry
	authz   *denyAuthorizer
	etcd    *clientv3.Client
	// faultRules: injected errors, latency and stalls (faults.go).
	faultRules *faults
	// tokens: the bearer tokens of DIR/tokens.csv (tokens.go).
	tokens *tokenStore
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func methodNotAllowed(w http.ResponseWriter, allowed string) {
	w.Header().Set("Allow", allowed)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed; use " + allowed})
}

func (h *testHooks) install(m *mux.PathRecorderMux) {
	m.HandleFunc("/testing/requests", h.requests)
	m.HandleFunc("/testing/requests/reset", h.reset)
	m.HandleFunc("/testing/writes", h.writes)
	m.HandleFunc("/testing/expire-watches", h.expireWatches)
	m.HandleFunc("/testing/watches", h.openWatches)
	m.HandleFunc("/testing/deny", h.deny)
	m.HandleFunc("/testing/faults", h.faults)
	m.HandleFunc("/testing/tokens", h.testTokens)
}

func (h *testHooks) requests(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	snap := h.acct.snapshot()
	if u := r.URL.Query().Get("user"); u != "" {
		c := snap[u]
		if c == nil {
			c = newUserCounts()
		}
		writeJSON(w, http.StatusOK, c)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"users": snap})
}

// writes lists the logged write requests (of one client identity with ?user=).
func (h *testHooks) writes(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"writes": h.acct.writesOf(r.URL.Query().Get("user"))})
}

// openWatches reports the watches open right now, per client identity.
func (h *testHooks) openWatches(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	open := h.watches.open()
	if u := r.URL.Query().Get("user"); u != "" {
		writeJSON(w, http.StatusOK, map[string]int{"open": open[u]})
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"users": open})
}

func (h *testHooks) reset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	h.acct.reset()
	writeJSON(w, http.StatusOK, map[string]string{"status": "reset"})
}

// expireWatches advances the etcd revision twice and compacts at the new revision, so
// that every resourceVersion a client has seen so far is compacted, then ends every
// open watch. A client resuming from its last resourceVersion gets 410 Gone.
func (h *testHooks) expireWatches(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var rev int64
	for i := 0; i < 2; i++ {
		resp, err := h.etcd.Put(ctx, "/kapi/expire-watches", time.Now().String())
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		rev = resp.Header.Revision
	}
	if _, err := h.etcd.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	n := h.watches.cancelAll()
	writeJSON(w, http.StatusOK, map[string]interface{}{"compactedRevision": rev, "watchesClosed": n})
}

func (h *testHooks) deny(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": h.authz.list()})
	case http.MethodDelete:
		h.authz.clear()
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": []denyRule{}})
	case http.MethodPost:
		var rule denyRule
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rule); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid deny rule: %v", err)})
			return
		}
		if strings.TrimSpace(rule.User) == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid deny rule: \"user\" is required"})
			return
		}
		h.authz.add(rule)
		writeJSON(w, http.StatusOK, map[string]interface{}{"rules": h.authz.list()})
	default:
		methodNotAllowed(w, "GET, POST, DELETE")
	}
}
