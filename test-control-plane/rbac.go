package main

// RBAC authorization (`kapi serve --authorization-mode RBAC`), our own small copy of the
// semantics of kube-apiserver's RBAC authorizer (k8s.io/kubernetes, not packaged by
// Debian): ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant
// their Role or ClusterRole in their own namespace only. Roles and bindings are read
// from informers of the server's shared informer factory (loopback client), so a new
// binding takes effect as soon as its watch event arrives (milliseconds).
//
// Not modelled: aggregated ClusterRoles (aggregationRule is ignored; the stored rules
// are used as they are), the bootstrap roles and bindings (instead, the rules that
// kube's system:discovery, system:public-info-viewer and system:basic-user bindings
// grant group system:authenticated are built in), and the escalation checks on writes
// of roles and bindings.

import (
	"fmt"
	"net/http"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/informers"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

const (
	authzAlwaysAllow = "AlwaysAllow"
	authzRBAC        = "RBAC"
)

type rbacAuthorizer struct {
	roles               rbaclisters.RoleLister
	roleBindings        rbaclisters.RoleBindingLister
	clusterRoles        rbaclisters.ClusterRoleLister
	clusterRoleBindings rbaclisters.ClusterRoleBindingLister
	synced              []cache.InformerSynced
}

// newRBACAuthorizer registers the four RBAC informers with the factory; they start with
// the factory's other informers.
func newRBACAuthorizer(f informers.SharedInformerFactory) *rbacAuthorizer {
	v1 := f.Rbac().V1()
	r := &rbacAuthorizer{
		roles:               v1.Roles().Lister(),
		roleBindings:        v1.RoleBindings().Lister(),
		clusterRoles:        v1.ClusterRoles().Lister(),
		clusterRoleBindings: v1.ClusterRoleBindings().Lister(),
	}
	for _, inf := range []cache.SharedIndexInformer{v1.Roles().Informer(), v1.RoleBindings().Informer(),
		v1.ClusterRoles().Informer(), v1.ClusterRoleBindings().Informer()} {
		r.synced = append(r.synced, inf.HasSynced)
	}
	return r
}

// basicUserRules is what kube's bootstrap ClusterRole system:basic-user grants to group
// system:authenticated: asking about one's own permissions and identity.
var basicUserRules = []rbacv1.PolicyRule{
	{Verbs: []string{"create"}, APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"selfsubjectaccessreviews", "selfsubjectrulesreviews"}},
	{Verbs: []string{"create"}, APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"selfsubjectreviews"}},
}

// discoveryRules is what kube's bootstrap ClusterRoles system:discovery and
// system:public-info-viewer grant to group system:authenticated: health, version,
// OpenAPI and API discovery. Not /metrics (kube's system:monitoring is bound to no one
// by default): that needs a ClusterRole with nonResourceURLs.
var discoveryRules = []rbacv1.PolicyRule{
	{Verbs: []string{"get"}, NonResourceURLs: []string{"/livez", "/readyz", "/healthz", "/version", "/version/",
		"/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"}},
}

// authorize decides a request as kube's RBAC authorizer does: allowed with the reason
// "RBAC: allowed by ..." or not allowed, with the errors met on the way (e.g. a binding
// whose role does not exist) as the reason. Non-resource requests (no namespace) are
// granted by ClusterRoleBindings only, through the ClusterRole's nonResourceURLs.
func (r *rbacAuthorizer) authorize(a authorizer.Attributes) (bool, string) {
	u := a.GetUser()
	if u == nil {
		return false, ""
	}
	if hasString(u.GetGroups(), user.AllAuthenticated) {
		if rulesAllow(a, basicUserRules) {
			return true, "kapi: allowed for group system:authenticated (as kube's system:basic-user)"
		}
		if rulesAllow(a, discoveryRules) {
			return true, "kapi: allowed for group system:authenticated (as kube's system:discovery)"
		}
	}
	var errs []error
	crbs, err := r.clusterRoleBindings.List(labels.Everything())
	if err != nil {
		errs = append(errs, err)
	}
	for _, b := range crbs {
		s, ok := appliesTo(u, b.Subjects, "")
		if !ok {
			continue
		}
		rules, err := r.roleRefRules(b.RoleRef, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rulesAllow(a, rules) {
			return true, fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of %s %q to %s", b.Name, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(s, ""))
		}
	}
	if ns := a.GetNamespace(); ns != "" {
		rbs, err := r.roleBindings.RoleBindings(ns).List(labels.Everything())
		if err != nil {
			errs = append(errs, err)
		}
		for _, b := range rbs {
			s, ok := appliesTo(u, b.Subjects, ns)
			if !ok {
				continue
			}
			rules, err := r.roleRefRules(b.RoleRef, ns)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if rulesAllow(a, rules) {
				return true, fmt.Sprintf("RBAC: allowed by RoleBinding %q of %s %q to %s", b.Name+"/"+ns, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(s, ns))
			}
		}
	}
	if len(errs) > 0 {
		return false, fmt.Sprintf("RBAC: %v", utilerrors.NewAggregate(errs))
	}
	return false, ""
}

func (r *rbacAuthorizer) roleRefRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "Role":
		role, err := r.roles.Roles(namespace).Get(ref.Name)
		if err != nil {
			return nil, err
		}
		return role.Rules, nil
	case "ClusterRole":
		role, err := r.clusterRoles.Get(ref.Name)
		if err != nil {
			return nil, err
		}
		return role.Rules, nil
	}
	return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
}

// appliesTo returns the first subject that names the user. A ServiceAccount subject
// without a namespace means the binding's namespace.
func appliesTo(u user.Info, subjects []rbacv1.Subject, namespace string) (*rbacv1.Subject, bool) {
	for i := range subjects {
		s := &subjects[i]
		switch s.Kind {
		case rbacv1.UserKind:
			if u.GetName() == s.Name {
				return s, true
			}
		case rbacv1.GroupKind:
			if hasString(u.GetGroups(), s.Name) {
				return s, true
			}
		case rbacv1.ServiceAccountKind:
			ns := namespace
			if s.Namespace != "" {
				ns = s.Namespace
			}
			if ns != "" && serviceaccount.MatchesUsername(ns, s.Name, u.GetName()) {
				return s, true
			}
		}
	}
	return nil, false
}

func describeSubject(s *rbacv1.Subject, bindingNamespace string) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return fmt.Sprintf("%s %q", s.Kind, s.Name+"/"+ns)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}

func rulesAllow(a authorizer.Attributes, rules []rbacv1.PolicyRule) bool {
	for i := range rules {
		if ruleAllows(a, &rules[i]) {
			return true
		}
	}
	return false
}

// ruleAllows is kube's RuleAllows: verbs, API groups, resources ("*", exact
// "resource/subresource", or "*/subresource"; "resource/*" is not a wildcard) and
// resourceNames (a rule with names never matches a request without a name: create,
// list and watch, unless a list or watch selects one name with metadata.name) for
// resource requests; verbs and nonResourceURLs (exact, "*", or a "prefix*") otherwise.
func ruleAllows(a authorizer.Attributes, rule *rbacv1.PolicyRule) bool {
	if !hasStringOrAll(rule.Verbs, a.GetVerb(), rbacv1.VerbAll) {
		return false
	}
	if !a.IsResourceRequest() {
		for _, u := range rule.NonResourceURLs {
			if u == rbacv1.NonResourceAll || u == a.GetPath() ||
				(strings.HasSuffix(u, "*") && strings.HasPrefix(a.GetPath(), strings.TrimRight(u, "*"))) {
				return true
			}
		}
		return false
	}
	if !hasStringOrAll(rule.APIGroups, a.GetAPIGroup(), rbacv1.APIGroupAll) {
		return false
	}
	res, sub := a.GetResource(), a.GetSubresource()
	if sub != "" {
		res += "/" + sub
	}
	resOK := false
	for _, r := range rule.Resources {
		if r == rbacv1.ResourceAll || r == res || (sub != "" && r == "*/"+sub) {
			resOK = true
			break
		}
	}
	if !resOK {
		return false
	}
	return len(rule.ResourceNames) == 0 || hasString(rule.ResourceNames, a.GetName())
}

func hasStringOrAll(list []string, s, all string) bool {
	return hasString(list, s) || hasString(list, all)
}

// withKubeGroups adds the groups kube-apiserver's authenticators add: the
// ServiceAccount groups for a user named system:serviceaccount:NS:NAME (as the
// ServiceAccount token authenticator does), then system:authenticated.
func withKubeGroups(auth authenticator.Request) authenticator.Request {
	sa := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := auth.AuthenticateRequest(req)
		if err != nil || !ok {
			return resp, ok, err
		}
		ns, _, serr := serviceaccount.SplitUsername(resp.User.GetName())
		if serr != nil {
			return resp, ok, nil
		}
		groups := append([]string{}, resp.User.GetGroups()...)
		for _, g := range serviceaccount.MakeGroupNames(ns) {
			if !hasString(groups, g) {
				groups = append(groups, g)
			}
		}
		out := *resp // shallow copy: the x509 authenticator caches its responses
		out.User = &user.DefaultInfo{Name: resp.User.GetName(), UID: resp.User.GetUID(), Groups: groups, Extra: resp.User.GetExtra()}
		return &out, true, nil
	})
	return group.NewAuthenticatedGroupAdder(sa)
}
