package main

// PKI of a state directory (DIR/pki) and kubeconfig files.
//
// All certificates are X.509 v3 with ECDSA P-256 keys. Client certificates carry
// basicConstraints CA:FALSE, keyUsage digitalSignature+keyEncipherment and extKeyUsage
// clientAuth, because rustls (kube-rs) refuses v1 client certificates.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type pkiPaths struct{ dir string }

func (p pkiPaths) caCert() string      { return filepath.Join(p.dir, "ca.crt") }
func (p pkiPaths) caKey() string       { return filepath.Join(p.dir, "ca.key") }
func (p pkiPaths) servingCert() string { return filepath.Join(p.dir, "serving.crt") }
func (p pkiPaths) servingKey() string  { return filepath.Join(p.dir, "serving.key") }
func (p pkiPaths) adminCert() string   { return filepath.Join(p.dir, "admin.crt") }
func (p pkiPaths) adminKey() string    { return filepath.Join(p.dir, "admin.key") }

// ensurePKI creates the CA, the serving certificate and the admin client certificate
// unless they already exist (a restart reuses them).
func ensurePKI(stateDir string) (pkiPaths, error) {
	p := pkiPaths{dir: filepath.Join(stateDir, "pki")}
	if fileExists(p.caCert()) && fileExists(p.caKey()) && fileExists(p.servingCert()) &&
		fileExists(p.servingKey()) && fileExists(p.adminCert()) && fileExists(p.adminKey()) {
		return p, nil
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return p, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "kapi-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if err := writeCertKey(p.caCert(), p.caKey(), caDER, caKey); err != nil {
		return p, err
	}
	servDER, servKey, err := signCert(caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kapi"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return p, err
	}
	if err := writeCertKey(p.servingCert(), p.servingKey(), servDER, servKey); err != nil {
		return p, err
	}
	admDER, admKey, err := signClientCert(caCert, caKey, "admin", []string{"system:masters"})
	if err != nil {
		return p, err
	}
	return p, writeCertKey(p.adminCert(), p.adminKey(), admDER, admKey)
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// signCert signs a leaf certificate (basicConstraints CA:FALSE, keyUsage
// digitalSignature+keyEncipherment) with the CA.
func signCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().AddDate(10, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return der, key, err
}

func signClientCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, groups []string) ([]byte, *ecdsa.PrivateKey, error) {
	return signCert(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func writeCertKey(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadCA(p pkiPaths) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(p.caCert())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(p.caKey())
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("corrupt CA files in " + p.dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	return cert, key, err
}

// buildKubeconfig returns a kubeconfig with embedded certificates; cluster, user and
// context are named "kapi".
func buildKubeconfig(server string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kapi"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["kapi"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["kapi"] = &clientcmdapi.Context{Cluster: "kapi", AuthInfo: "kapi", Namespace: "default"}
	cfg.CurrentContext = "kapi"
	return clientcmd.Write(*cfg)
}

func adminKubeconfig(p pkiPaths, server string) ([]byte, error) {
	ca, err := os.ReadFile(p.caCert())
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(p.adminCert())
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(p.adminKey())
	if err != nil {
		return nil, err
	}
	return buildKubeconfig(server, ca, cert, key)
}

// mintKubeconfig signs a new client certificate for user/groups with the state
// directory's CA and returns a kubeconfig for it.
func mintKubeconfig(stateDir, server, user string, groups []string) ([]byte, error) {
	p := pkiPaths{dir: filepath.Join(stateDir, "pki")}
	ca, caKey, err := loadCA(p)
	if err != nil {
		return nil, fmt.Errorf("reading CA of %s (has the server been started once?): %w", stateDir, err)
	}
	der, key, err := signClientCert(ca, caKey, user, groups)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	return buildKubeconfig(server, caPEM,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFileAtomic writes a temporary file next to path and renames it into place.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
