package main

// Bearer tokens and the TokenReview API.
//
// Tokens live in DIR/tokens.csv, in kube-apiserver's static token file format
// (`--token-auth-file`: token,user,uid[,"group1,group2"]). `kapi token`,
// POST /testing/tokens and TokenRequest (serviceaccounts/token, tokenrequest.go) append
// to it (under DIR/tokens.lock, by writing a new file and renaming it into place); the
// server re-reads it whenever it changed (a stat per token-authenticated request), so a
// token works whether it was minted before or after the server started. As kube-apiserver
// does for its static token file, the tokens of `kapi token` and /testing/tokens are
// audience-agnostic: they are accepted for kapi's API audience (kubeAPIAudience) and
// refused when a TokenReview asks for another one; they live exactly as long as DIR.
//
// A TokenRequest token has more columns after the groups, which kube's parser ignores:
// exp=<RFC 3339 time>, jti=<uuid> and one aud=<audience> per audience. Such a token is
// checked as kube-apiserver checks a service account JWT (authenticateServiceAccountToken):
// audiences, expiry, and that its ServiceAccount still exists with the same UID.
//
// Authentication order is kube-apiserver's: the loopback token, then client
// certificates, then these tokens; an Authorization: Bearer header with an unknown
// token is 401 (unless a valid client certificate authenticates the request first).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

const (
	tokenFileName     = "tokens.csv"
	tokenLockFileName = "tokens.lock"
	// kubeAPIAudience is the API audience of a kubeadm or kind cluster (kube-apiserver's
	// --api-audiences defaults to --service-account-issuer, which they set to this).
	kubeAPIAudience = "https://kubernetes.default.svc.cluster.local"
)

var apiAudiences = authenticator.Audiences{kubeAPIAudience}

// tokenStore authenticates the tokens of DIR/tokens.csv, re-reading the file when it
// changed (inode, size or modification time).
type tokenStore struct {
	dir    string
	mu     sync.Mutex
	loaded bool
	stamp  fileStamp
	auth   *tokenfile.TokenAuthenticator // nil: no token file
	err    error
}

type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  int64
}

func newTokenStore(dir string) *tokenStore { return &tokenStore{dir: dir} }

func (s *tokenStore) path() string { return filepath.Join(s.dir, tokenFileName) }

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// current returns the authenticator of the token file as it is now (nil: no file).
func (s *tokenStore) current() (*tokenfile.TokenAuthenticator, error) {
	st, err := statFile(s.path())
	if err != nil {
		return nil, fmt.Errorf("reading token file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && st == s.stamp {
		return s.auth, s.err
	}
	s.loaded, s.stamp, s.auth, s.err = true, st, nil, nil
	if st.exists {
		s.auth, s.err = tokenfile.NewCSV(s.path())
		if s.err != nil {
			s.err = fmt.Errorf("reading token file: %w", s.err)
		}
	}
	return s.auth, s.err
}

// AuthenticateToken implements authenticator.Token: the user (name, uid, groups) the
// token was minted for.
func (s *tokenStore) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	a, err := s.current()
	if err != nil {
		return nil, false, err
	}
	if a == nil {
		return nil, false, nil
	}
	return a.AuthenticateToken(ctx, token)
}

// mintToken adds a new random token for user and groups (exactly these; none if empty)
// to DIR/tokens.csv and returns it. DIR is created if needed, so a token may be minted
// before the server's first start.
func mintToken(dir, user string, groups []string) (string, error) {
	if strings.TrimSpace(user) == "" {
		return "", fmt.Errorf("a user name is required")
	}
	for _, g := range groups {
		if g == "" || strings.Contains(g, ",") {
			return "", fmt.Errorf("invalid group %q: groups must be non-empty and contain no comma", g)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, tokenLockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	path := filepath.Join(dir, tokenFileName)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	var buf bytes.Buffer
	buf.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		buf.WriteByte('\n')
	}
	rec := []string{token, user, uuid.New().String()}
	if len(groups) > 0 {
		rec = append(rec, strings.Join(groups, ","))
	}
	w := csv.NewWriter(&buf)
	if err := w.Write(rec); err != nil {
		return "", err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	return token, nil
}

// runToken is `kapi token --dir DIR --user U [--group G]...`: mint a token, print it.
func runToken(args []string) error {
	fs := pflag.NewFlagSet("token", pflag.ContinueOnError)
	dir := fs.String("dir", "", "state directory (the token is added to DIR/tokens.csv; the server need not be running)")
	user := fs.String("user", "", "user name")
	groups := fs.StringArray("group", nil, "group, repeatable; default system:masters; --group '' for none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *user == "" {
		return fmt.Errorf("token: --dir and --user are required")
	}
	if len(*groups) == 0 {
		*groups = []string{"system:masters"}
	}
	var gs []string // --group '' alone: a token without groups
	for _, g := range *groups {
		if g != "" {
			gs = append(gs, g)
		}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	tok, err := mintToken(abs, *user, gs)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Println(tok)
	return nil
}

// testTokens is POST /testing/tokens {"user":"u","groups":["g"]} → {"token":"..."}.
func (h *testHooks) testTokens(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	var req struct {
		User   string   `json:"user"`
		Groups []string `json:"groups,omitempty"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid token request: %v", err)})
		return
	}
	if strings.TrimSpace(req.User) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid token request: \"user\" is required"})
		return
	}
	tok, err := mintToken(h.tokens.dir, req.User, req.Groups)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid token request: %v", err)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// --- authentication.k8s.io/v1 TokenReview, as kube-apiserver's
// pkg/registry/authentication/tokenreview ---

var errBadAuthenticatorAudiences = apierrors.NewInternalError(errors.New("error validating audiences"))

type tokenReviewREST struct {
	// authn is the server's request authenticator (loopback token, client certificates,
	// tokens, and the groups it adds), as kube-apiserver passes its own.
	authn        authenticator.Request
	apiAudiences authenticator.Audiences
}

func (r *tokenReviewREST) New() runtime.Object     { return &authenticationv1.TokenReview{} }
func (r *tokenReviewREST) Destroy()                {}
func (r *tokenReviewREST) NamespaceScoped() bool   { return false }
func (r *tokenReviewREST) GetSingularName() string { return "tokenreview" }

func (r *tokenReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	review, ok := obj.(*authenticationv1.TokenReview)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a TokenReview: %#v", obj))
	}
	if ns := genericapirequest.NamespaceValue(ctx); ns != "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("namespace is not allowed on this type: %v", ns))
	}
	if review.Spec.Token == "" {
		return nil, apierrors.NewBadRequest("token is required for TokenReview in authentication")
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	// A request that carries nothing but the token.
	fake := &http.Request{Header: http.Header{}}
	fake.Header.Add("Authorization", "Bearer "+review.Spec.Token)
	auds := authenticator.Audiences(review.Spec.Audiences)
	if len(auds) == 0 {
		auds = r.apiAudiences
	}
	if len(auds) > 0 {
		fake = fake.WithContext(authenticator.WithAudiences(fake.Context(), auds))
	}
	resp, ok, err := r.authn.AuthenticateRequest(fake)
	review.Status.Authenticated = ok
	if err != nil {
		review.Status.Error = err.Error()
	}
	if len(auds) > 0 && resp != nil && len(auds.Intersect(resp.Audiences)) == 0 {
		return nil, errBadAuthenticatorAudiences
	}
	if resp != nil && resp.User != nil {
		review.Status.User = authenticationv1.UserInfo{
			Username: resp.User.GetName(),
			UID:      resp.User.GetUID(),
			Groups:   resp.User.GetGroups(),
			Extra:    map[string]authenticationv1.ExtraValue{},
		}
		for k, v := range resp.User.GetExtra() {
			review.Status.User.Extra[k] = v
		}
		review.Status.Audiences = resp.Audiences
	}
	return review, nil
}
