package main

// serviceaccounts/token: the authentication.k8s.io/v1 TokenRequest subresource
// (`kubectl create token SA`), modelled on kube-apiserver's TokenREST
// (pkg/registry/core/serviceaccount/storage/token.go in k8s.io/kubernetes, which Debian
// does not package).
//
// kube-apiserver signs a JWT; kapi mints a random bearer token into DIR/tokens.csv
// (tokens.go, the same file and lock as `kapi token`) that records what the JWT would
// claim: the ServiceAccount user, its UID and groups, the expiry, a JTI and the
// audiences. The authenticator enforces them (authenticateServiceAccountToken): a
// token is refused for other audiences, after its expiry, and once its ServiceAccount
// is gone or was re-created with another UID. Unlike a JWT the token is opaque (no
// claims to decode) and lives only in DIR.
//
// Not supported: tokens bound to a Pod, Secret or Node (spec.boundObjectRef), which
// kube invalidates with their object: such a request is refused (400), not silently
// minted unbound. There is no --service-account-max-token-expiration: any duration kube
// validates (10 minutes to 2^32 seconds) is granted, as in a kube-apiserver without that
// flag (kubeadm's and kind's default).

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// The limits of kube's ValidateTokenRequest (pkg/apis/authentication/validation).
const (
	minTokenExpirationSeconds = 10 * 60
	maxTokenExpirationSeconds = 1 << 32
	// defaultTokenExpirationSeconds is kube's default of spec.expirationSeconds
	// (SetDefaults_TokenRequestSpec; registered in defaults.go).
	defaultTokenExpirationSeconds = 60 * 60
)

var tokenRequestGVK = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")

type tokenRequestREST struct {
	serviceAccounts rest.Getter
	tokens          *tokenStore
	apiAudiences    authenticator.Audiences
}

var _ rest.NamedCreater = &tokenRequestREST{}
var _ rest.GroupVersionKindProvider = &tokenRequestREST{}
var _ rest.SubresourceObjectMetaPreserver = &tokenRequestREST{}

func (r *tokenRequestREST) New() runtime.Object { return &authenticationv1.TokenRequest{} }
func (r *tokenRequestREST) Destroy()            {}
func (r *tokenRequestREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return tokenRequestGVK
}

// PreserveRequestObjectMetaSystemFieldsOnSubresourceCreate keeps metadata.uid of the
// request, which must match the ServiceAccount's (as in kube).
func (r *tokenRequestREST) PreserveRequestObjectMetaSystemFieldsOnSubresourceCreate() bool {
	return true
}

func validateTokenRequest(tr *authenticationv1.TokenRequest) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec", "expirationSeconds")
	exp := int64(0)
	if tr.Spec.ExpirationSeconds != nil {
		exp = *tr.Spec.ExpirationSeconds
	}
	if exp < minTokenExpirationSeconds {
		errs = append(errs, field.Invalid(p, exp, "may not specify a duration less than 10 minutes"))
	}
	if exp > maxTokenExpirationSeconds {
		errs = append(errs, field.Invalid(p, exp, "may not specify a duration larger than 2^32 seconds"))
	}
	return errs
}

// Create is POST /api/v1/namespaces/NS/serviceaccounts/NAME/token. The request was
// authorized as `create` on `serviceaccounts/token` (RBAC, deny list) and passed
// mutating admission; the order of the checks and their errors are kube's.
func (r *tokenRequestREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*authenticationv1.TokenRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a TokenRequest: %T", obj))
	}
	namespace, ok := genericapirequest.NamespaceFrom(ctx)
	if !ok || namespace == "" {
		return nil, apierrors.NewBadRequest("namespace is required")
	}
	gk := tokenRequestGVK.GroupKind()
	// name and namespace in the body must match the URL if given
	if len(req.Name) > 0 && req.Name != name {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), req.Name,
			"must match the service account name if specified")})
	}
	if len(req.Namespace) > 0 && req.Namespace != namespace {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace,
			"must match the service account namespace if specified")})
	}

	// A missing ServiceAccount is 404: serviceaccounts "NAME" not found.
	saObj, err := r.serviceAccounts.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sa, ok := saObj.(*corev1.ServiceAccount)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected ServiceAccount object %T", saObj))
	}
	// As kube with TokenRequestServiceAccountUIDValidation (beta, on by default since 1.34).
	if len(req.UID) > 0 && req.UID != sa.UID {
		return nil, apierrors.NewConflict(schema.GroupResource{Group: gk.Group, Resource: gk.Kind}, name,
			fmt.Errorf("the UID in the token request (%s) does not match the UID of the service account (%s)", req.UID, sa.UID))
	}

	if len(req.Spec.Audiences) == 0 {
		req.Spec.Audiences = append([]string{}, r.apiAudiences...)
	}
	if len(req.Name) == 0 {
		req.Name = sa.Name
	}
	if len(req.Namespace) == 0 {
		req.Namespace = sa.Namespace
	}
	if len(req.UID) == 0 {
		req.UID = sa.UID
	}
	if req.Spec.ExpirationSeconds == nil { // defaulted on decode; a Go client may bypass it
		req.Spec.ExpirationSeconds = ptrTo(int64(defaultTokenExpirationSeconds))
	}
	// one instant for status.expirationTimestamp and the expiry the authenticator enforces
	nowTime := time.Now()
	req.CreationTimestamp = metav1.NewTime(nowTime)
	req.Status = authenticationv1.TokenRequestStatus{}

	// static validation, then validating admission
	if errs := validateTokenRequest(req); len(errs) != 0 {
		return nil, apierrors.NewInvalid(gk, "", errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	if ref := req.Spec.BoundObjectRef; ref != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("kapi does not support tokens bound to an object (spec.boundObjectRef: %s %q)",
			ref.Kind, ref.Name))
	}

	// A dry run mints a token too: kube's TokenREST ignores dryRun and returns a valid
	// token (a JWT it does not store).
	expires := nowTime.Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second)
	tok, err := appendToken(r.tokens.dir, tokenRecord{
		user:      serviceaccount.MakeUsername(sa.Namespace, sa.Name),
		uid:       string(sa.UID),
		groups:    serviceaccount.MakeGroupNames(sa.Namespace),
		expires:   expires,
		jti:       uuid.New().String(),
		audiences: req.Spec.Audiences,
	})
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("failed to generate token: %v", err))
	}
	out := req.DeepCopy()
	out.Status = authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(expires)}
	return out, nil
}
