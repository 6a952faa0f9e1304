package main

// Authorization. With --authorization-mode AlwaysAllow (the default) everything is
// allowed except what the deny list names; with RBAC (rbac.go) a resource request is
// allowed for group system:masters or when an RBAC rule grants it, and the deny list
// still refuses on top. Non-resource requests are allowed in AlwaysAllow mode; in RBAC
// mode for system:masters, for /testing/* (any user), for the discovery paths kube
// grants system:authenticated, and when a ClusterRole's nonResourceURLs grant them
// (e.g. /metrics). The deny list applies to resource requests only. Deny rules come
// from --deny flags and from POST /testing/deny; SelfSubjectAccessReview,
// SubjectAccessReview and LocalSubjectAccessReview are answered from the same decision.

import (
	"context"
	"fmt"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// denyRule is the JSON form used by /testing/deny. Empty lists and "*" mean "all".
type denyRule struct {
	User       string   `json:"user"`
	Verbs      []string `json:"verbs,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// parseDenyFlag parses USER:VERB[,VERB]:RESOURCE[,RESOURCE].
func parseDenyFlag(s string) (denyRule, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return denyRule{}, fmt.Errorf("invalid --deny %q: want USER:VERB[,VERB]:RESOURCE[,RESOURCE]", s)
	}
	split := func(v string) []string {
		if v == "" || v == "*" {
			return nil
		}
		return strings.Split(v, ",")
	}
	return denyRule{User: parts[0], Verbs: split(parts[1]), Resources: split(parts[2])}, nil
}

func matchAny(list []string, candidates ...string) bool {
	if len(list) == 0 {
		return true
	}
	for _, l := range list {
		if l == "*" {
			return true
		}
		for _, c := range candidates {
			if l == c {
				return true
			}
		}
	}
	return false
}

func (r denyRule) matches(a authorizer.Attributes) bool {
	u := a.GetUser()
	if u == nil {
		return false
	}
	if r.User != u.GetName() && !(r.User == "*" && u.GetName() != user.APIServerUser) {
		return false
	}
	if !matchAny(r.Verbs, a.GetVerb()) || !matchAny(r.Namespaces, a.GetNamespace()) {
		return false
	}
	// "secrets", "pods/eviction", "deployments.apps", "deployments.apps/scale" or
	// "deployments/scale.apps"
	res := a.GetResource()
	if sub := a.GetSubresource(); sub != "" {
		res += "/" + sub
	}
	cands := []string{res}
	if g := a.GetAPIGroup(); g != "" {
		cands = []string{res + "." + g}
		if sub := a.GetSubresource(); sub != "" {
			cands = append(cands, a.GetResource()+"."+g+"/"+sub)
		}
	}
	return matchAny(r.Resources, cands...)
}

type denyAuthorizer struct {
	mu    sync.RWMutex
	rules []denyRule
	acct  *accounting
	rbac  *rbacAuthorizer // nil: AlwaysAllow
}

func (d *denyAuthorizer) add(r denyRule) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rules = append(d.rules, r)
}

func (d *denyAuthorizer) clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rules = nil
}

func (d *denyAuthorizer) list() []denyRule {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]denyRule{}, d.rules...)
}

func (d *denyAuthorizer) denied(a authorizer.Attributes) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, r := range d.rules {
		if r.matches(a) {
			return true
		}
	}
	return false
}

// decide evaluates the deny list (resource requests only), then, in RBAC mode,
// system:masters, the /testing hooks and the RBAC rules (rbac.go), without side effects.
// The reason of an allowed request says why; a refusal carries no reason (so the 403
// reads exactly like kube's), except RBAC's errors.
func (d *denyAuthorizer) decide(a authorizer.Attributes) (authorizer.Decision, string) {
	if a.IsResourceRequest() && d.denied(a) {
		return authorizer.DecisionDeny, ""
	}
	if d.rbac == nil {
		return authorizer.DecisionAllow, "kapi: allowed (no deny rule matches)"
	}
	u := a.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, ""
	}
	if hasString(u.GetGroups(), user.SystemPrivilegedGroup) {
		return authorizer.DecisionAllow, "kapi: allowed for group system:masters"
	}
	if !a.IsResourceRequest() && isTestingPath(a.GetPath()) {
		return authorizer.DecisionAllow, "kapi: the /testing hooks are open to every user"
	}
	ok, reason := d.rbac.authorize(a)
	if ok {
		return authorizer.DecisionAllow, reason
	}
	return authorizer.DecisionNoOpinion, reason
}

// Authorize is the request path. A refusal is a 403 in kube's words:
// `secrets "x" is forbidden: User "u" cannot create resource "secrets" ...`.
func (d *denyAuthorizer) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	dec, reason := d.decide(a)
	if dec != authorizer.DecisionAllow && d.acct != nil {
		d.acct.recordDenied(ctx, a)
	}
	return dec, reason, nil
}

func isTestingPath(p string) bool { return p == "/testing" || strings.HasPrefix(p, "/testing/") }

// RulesFor answers SelfSubjectRulesReview: everything (the deny list is not expressed).
func (d *denyAuthorizer) RulesFor(ctx context.Context, u user.Info, namespace string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	return []authorizer.ResourceRuleInfo{&authorizer.DefaultResourceRuleInfo{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
		[]authorizer.NonResourceRuleInfo{&authorizer.DefaultNonResourceRuleInfo{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
		true, nil
}

// --- authorization.k8s.io/v1 reviews ---

type accessReviewREST struct {
	authz *denyAuthorizer
	kind  string
}

func (r *accessReviewREST) New() runtime.Object {
	switch r.kind {
	case "SelfSubjectAccessReview":
		return &authorizationv1.SelfSubjectAccessReview{}
	case "LocalSubjectAccessReview":
		return &authorizationv1.LocalSubjectAccessReview{}
	}
	return &authorizationv1.SubjectAccessReview{}
}
func (r *accessReviewREST) Destroy()                {}
func (r *accessReviewREST) NamespaceScoped() bool   { return r.kind == "LocalSubjectAccessReview" }
func (r *accessReviewREST) GetSingularName() string { return strings.ToLower(r.kind) }

func attributesFrom(u user.Info, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) authorizer.AttributesRecord {
	if ra != nil {
		return authorizer.AttributesRecord{User: u, Verb: ra.Verb, Namespace: ra.Namespace, APIGroup: ra.Group, APIVersion: ra.Version,
			Resource: ra.Resource, Subresource: ra.Subresource, Name: ra.Name, ResourceRequest: true}
	}
	a := authorizer.AttributesRecord{User: u, ResourceRequest: false}
	if nra != nil {
		a.Verb, a.Path = nra.Verb, nra.Path
	}
	return a
}

func (r *accessReviewREST) review(a authorizer.AttributesRecord) authorizationv1.SubjectAccessReviewStatus {
	dec, reason := r.authz.decide(a)
	switch dec {
	case authorizer.DecisionAllow:
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: reason}
	case authorizer.DecisionDeny:
		return authorizationv1.SubjectAccessReviewStatus{Allowed: false, Denied: true,
			Reason: fmt.Sprintf("kapi: denied by a deny rule for user %q", a.User.GetName())}
	}
	// No RBAC rule allows it: neither allowed nor denied, as with kube's RBAC.
	return authorizationv1.SubjectAccessReviewStatus{Allowed: false, Reason: reason}
}

func (r *accessReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	switch o := obj.(type) {
	case *authorizationv1.SelfSubjectAccessReview:
		u, ok := genericapirequest.UserFrom(ctx)
		if !ok {
			return nil, errors.NewBadRequest("no user present on request")
		}
		if o.Spec.ResourceAttributes == nil && o.Spec.NonResourceAttributes == nil {
			return nil, errors.NewBadRequest("exactly one of nonResourceAttributes or resourceAttributes must be specified")
		}
		o.Status = r.review(attributesFrom(u, o.Spec.ResourceAttributes, o.Spec.NonResourceAttributes))
		return o, nil
	case *authorizationv1.SubjectAccessReview:
		if o.Spec.User == "" && len(o.Spec.Groups) == 0 {
			return nil, errors.NewBadRequest("at least one of user or group must be specified")
		}
		u := &user.DefaultInfo{Name: o.Spec.User, Groups: o.Spec.Groups, UID: o.Spec.UID}
		o.Status = r.review(attributesFrom(u, o.Spec.ResourceAttributes, o.Spec.NonResourceAttributes))
		return o, nil
	case *authorizationv1.LocalSubjectAccessReview:
		ns := genericapirequest.NamespaceValue(ctx)
		if o.Spec.ResourceAttributes != nil && o.Spec.ResourceAttributes.Namespace != ns {
			return nil, errors.NewBadRequest(fmt.Sprintf("spec.resourceAttributes.namespace must match namespace: %v", ns))
		}
		u := &user.DefaultInfo{Name: o.Spec.User, Groups: o.Spec.Groups, UID: o.Spec.UID}
		o.Status = r.review(attributesFrom(u, o.Spec.ResourceAttributes, o.Spec.NonResourceAttributes))
		return o, nil
	}
	return nil, errors.NewBadRequest(fmt.Sprintf("unexpected object %T", obj))
}

type rulesReviewREST struct{}

func (r *rulesReviewREST) New() runtime.Object     { return &authorizationv1.SelfSubjectRulesReview{} }
func (r *rulesReviewREST) Destroy()                {}
func (r *rulesReviewREST) NamespaceScoped() bool   { return false }
func (r *rulesReviewREST) GetSingularName() string { return "selfsubjectrulesreview" }
func (r *rulesReviewREST) Create(ctx context.Context, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	o := obj.(*authorizationv1.SelfSubjectRulesReview)
	o.Status = authorizationv1.SubjectRulesReviewStatus{
		ResourceRules:    []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
		NonResourceRules: []authorizationv1.NonResourceRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
		Incomplete:       true,
		EvaluationError:  "kapi: deny-list rules are not listed",
	}
	return o, nil
}

// --- authentication.k8s.io/v1 SelfSubjectReview (kubectl auth whoami) ---

type selfSubjectReviewREST struct{}

func (r *selfSubjectReviewREST) New() runtime.Object     { return &authenticationv1.SelfSubjectReview{} }
func (r *selfSubjectReviewREST) Destroy()                {}
func (r *selfSubjectReviewREST) NamespaceScoped() bool   { return false }
func (r *selfSubjectReviewREST) GetSingularName() string { return "selfsubjectreview" }
func (r *selfSubjectReviewREST) Create(ctx context.Context, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, errors.NewBadRequest("no user present on request")
	}
	o := obj.(*authenticationv1.SelfSubjectReview)
	o.Status.UserInfo = authenticationv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}
	if extra := u.GetExtra(); len(extra) > 0 {
		o.Status.UserInfo.Extra = map[string]authenticationv1.ExtraValue{}
		for k, v := range extra {
			o.Status.UserInfo.Extra[k] = v
		}
	}
	return o, nil
}
