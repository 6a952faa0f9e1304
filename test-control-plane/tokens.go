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
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/token/jwt"
	"k8s.io/apiserver/pkg/authentication/user"
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

// jwtLeeway is the clock skew go-jose allows when kube-apiserver validates a service
// account JWT (jwt.DefaultLeeway): a token is refused once its expiry is a minute past.
const jwtLeeway = time.Minute

// tokenStore authenticates the tokens of DIR/tokens.csv, re-reading the file when it
// changed (inode, size or modification time).
type tokenStore struct {
	dir    string
	mu     sync.Mutex
	loaded bool
	stamp  fileStamp
	snap   *tokenSnapshot // nil: no token file
	err    error
	// serviceAccounts is the ServiceAccount store, set once the server's stores exist
	// (setServiceAccounts); TokenRequest tokens are refused until then.
	serviceAccounts rest.Getter
}

// tokenSnapshot is the parsed token file.
type tokenSnapshot struct {
	users map[string]*user.DefaultInfo
	// meta: the TokenRequest tokens (with exp=, jti=, aud= columns) and what they carry
	meta map[string]*tokenMeta
}

// tokenMeta is what a TokenRequest token carries beyond kube's static token columns:
// the claims of kube's service account JWT that matter to authentication.
type tokenMeta struct {
	expires   time.Time
	jti       string
	audiences authenticator.Audiences
}

type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  int64
}

func newTokenStore(dir string) *tokenStore { return &tokenStore{dir: dir} }

func (s *tokenStore) path() string { return filepath.Join(s.dir, tokenFileName) }

// setServiceAccounts gives the store the ServiceAccount storage that TokenRequest tokens
// are checked against.
func (s *tokenStore) setServiceAccounts(g rest.Getter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serviceAccounts = g
}

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

// current returns the token file as it is now (nil: no file) and the ServiceAccount
// storage.
func (s *tokenStore) current() (*tokenSnapshot, rest.Getter, error) {
	st, err := statFile(s.path())
	if err != nil {
		return nil, nil, fmt.Errorf("reading token file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && st == s.stamp {
		return s.snap, s.serviceAccounts, s.err
	}
	s.loaded, s.stamp, s.snap, s.err = true, st, nil, nil
	if st.exists {
		s.snap, s.err = readTokenFile(s.path())
		if s.err != nil {
			s.err = fmt.Errorf("reading token file: %w", s.err)
		}
	}
	return s.snap, s.serviceAccounts, s.err
}

// readTokenFile parses the token file as kube's tokenfile.NewCSV does (at least three
// columns token,user,uid, then optional comma-separated groups; records with an empty
// token are skipped; a later duplicate wins), and also the TokenRequest columns after
// the groups (exp=, jti=, aud=), which kube's parser ignores.
func readTokenFile(path string) (*tokenSnapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	snap := &tokenSnapshot{users: map[string]*user.DefaultInfo{}, meta: map[string]*tokenMeta{}}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("token file '%s' must have at least 3 columns (token, user name, user uid), found %d", path, len(rec))
		}
		if rec[0] == "" {
			continue
		}
		u := &user.DefaultInfo{Name: rec[1], UID: rec[2]}
		if len(rec) >= 4 {
			u.Groups = strings.Split(rec[3], ",")
		}
		snap.users[rec[0]] = u
		delete(snap.meta, rec[0])
		if len(rec) > 4 {
			m, err := parseTokenMeta(rec[4:])
			if err != nil {
				return nil, fmt.Errorf("token file '%s', a token of user %q: %w", path, rec[1], err)
			}
			if m != nil {
				snap.meta[rec[0]] = m
			}
		}
	}
	return snap, nil
}

// parseTokenMeta reads the exp=, jti= and aud= columns of a TokenRequest token (nil:
// none; other columns are ignored).
func parseTokenMeta(cols []string) (*tokenMeta, error) {
	m := &tokenMeta{}
	var hasExp, any bool
	for _, c := range cols {
		k, v, _ := strings.Cut(c, "=")
		switch k {
		case "exp":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fmt.Errorf("invalid expiry %q: %w", v, err)
			}
			m.expires, hasExp, any = t, true, true
		case "jti":
			m.jti, any = v, true
		case "aud":
			m.audiences, any = append(m.audiences, v), true
		}
	}
	if !any {
		return nil, nil
	}
	if !hasExp {
		return nil, errors.New("a token with jti= or aud= columns needs an exp= column")
	}
	return m, nil
}

// AuthenticateToken implements authenticator.Token. The tokens of `kapi token` and
// /testing/tokens authenticate as the user (name, uid, groups) they were minted for, for
// the API audience only (as kube's audience-agnostic static tokens); TokenRequest tokens
// as their ServiceAccount (authenticateServiceAccountToken).
func (s *tokenStore) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	snap, serviceAccounts, err := s.current()
	if err != nil {
		return nil, false, err
	}
	if snap == nil {
		return nil, false, nil
	}
	u, ok := snap.users[token]
	if !ok {
		return nil, false, nil
	}
	if m := snap.meta[token]; m != nil {
		return authenticateServiceAccountToken(ctx, u, m, serviceAccounts)
	}
	static := authenticator.TokenFunc(func(context.Context, string) (*authenticator.Response, bool, error) {
		return &authenticator.Response{User: u}, true, nil
	})
	return authenticator.WrapAudienceAgnosticToken(apiAudiences, static).AuthenticateToken(ctx, token)
}

// authenticateServiceAccountToken checks a TokenRequest token as kube-apiserver checks a
// service account JWT (k8s.io/kubernetes pkg/serviceaccount/jwt.go and claims.go, not
// packaged by Debian), with the same errors: its audiences must include one the request
// is for (the API audience, or a TokenReview's spec.audiences); it must not have expired
// (with go-jose's one-minute leeway); its ServiceAccount must still exist with the UID it
// was minted for and not have been deleted. The user is kube's ServiceAccount user:
// system:serviceaccount:NS:NAME, uid = the ServiceAccount's UID, groups
// system:serviceaccounts and system:serviceaccounts:NS, and extra
// authentication.kubernetes.io/credential-id = JTI=<jti>.
func authenticateServiceAccountToken(ctx context.Context, u *user.DefaultInfo, m *tokenMeta, serviceAccounts rest.Getter) (*authenticator.Response, bool, error) {
	requested, ok := authenticator.AudiencesFrom(ctx)
	if !ok {
		requested = apiAudiences
	}
	auds := m.audiences.Intersect(requested)
	if len(auds) == 0 {
		return nil, false, fmt.Errorf("token audiences %q is invalid for the target audiences %q", m.audiences, requested)
	}
	now := time.Now()
	if now.Add(-jwtLeeway).After(m.expires) {
		return nil, false, errors.New("service account token has expired")
	}
	ns, name, err := serviceaccount.SplitUsername(u.Name)
	if err != nil {
		return nil, false, fmt.Errorf("service account token claims could not be validated: %w", err)
	}
	if serviceAccounts == nil {
		return nil, false, errors.New("service account tokens are not accepted before the server has started")
	}
	obj, err := serviceAccounts.Get(genericapirequest.WithNamespace(ctx, ns), name, &metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return nil, false, fmt.Errorf("unexpected ServiceAccount object %T", obj)
	}
	if string(sa.UID) != u.UID {
		return nil, false, fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, u.UID)
	}
	if sa.DeletionTimestamp != nil && sa.DeletionTimestamp.Time.Before(now.Add(-jwtLeeway)) {
		return nil, false, fmt.Errorf("service account %s/%s has been deleted", ns, name)
	}
	info := (&serviceaccount.ServiceAccountInfo{Name: name, Namespace: ns, UID: u.UID,
		CredentialID: jwt.CredentialIDForJTI(m.jti)}).UserInfo()
	return &authenticator.Response{User: info, Audiences: auds}, true, nil
}

// tokenRecord is one line of DIR/tokens.csv.
type tokenRecord struct {
	user, uid string
	groups    []string
	// TokenRequest tokens only: the exp=, jti= and aud= columns (none when expires is zero)
	expires   time.Time
	jti       string
	audiences []string
}

// mintToken adds a new random token for user and groups (exactly these; none if empty)
// to DIR/tokens.csv and returns it. DIR is created if needed, so a token may be minted
// before the server's first start.
func mintToken(dir, userName string, groups []string) (string, error) {
	return appendToken(dir, tokenRecord{user: userName, uid: uuid.New().String(), groups: groups})
}

// appendToken adds a new random token for rec to DIR/tokens.csv (creating DIR if needed)
// and returns it.
func appendToken(dir string, rec tokenRecord) (string, error) {
	if strings.TrimSpace(rec.user) == "" {
		return "", fmt.Errorf("a user name is required")
	}
	for _, g := range rec.groups {
		if g == "" || strings.Contains(g, ",") {
			return "", fmt.Errorf("invalid group %q: groups must be non-empty and contain no comma", g)
		}
	}
	if !rec.expires.IsZero() && len(rec.groups) == 0 {
		// the exp= column must not land in the groups column
		return "", fmt.Errorf("a token with an expiry needs groups")
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
	cols := []string{token, rec.user, rec.uid}
	if len(rec.groups) > 0 {
		cols = append(cols, strings.Join(rec.groups, ","))
	}
	if !rec.expires.IsZero() {
		cols = append(cols, "exp="+rec.expires.UTC().Format(time.RFC3339), "jti="+rec.jti)
		for _, a := range rec.audiences {
			cols = append(cols, "aud="+a)
		}
	}
	w := csv.NewWriter(&buf)
	if err := w.Write(cols); err != nil {
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
