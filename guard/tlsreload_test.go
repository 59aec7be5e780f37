package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pair(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedCN(t *testing.T, s *servingTLS) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(s.Current().Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestServingTLSReloadsOnlySoundChangedMaterial(t *testing.T) {
	dir := t.TempDir()
	crt, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	c1, k1 := pair(t, "one")
	caPEM, _ := pair(t, "client-ca")
	write(t, crt, c1)
	write(t, key, k1)
	write(t, ca, caPEM)
	s, err := newServingTLS(crt, key, ca, "")
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	s.onError = func(err error) { errs = append(errs, err) }
	if cfg := s.ServerConfig(); cfg.GetConfigForClient == nil || cfg.NextProtos[0] != "h2" {
		t.Fatal("server config must ask for the current material on every handshake and speak h2")
	}
	if servedCN(t, s) != "one" || s.reloads != 0 {
		t.Fatal("unchanged files must not reload")
	}
	c2, k2 := pair(t, "two")
	write(t, crt, c2) // half-way through an update: the key does not match yet
	if servedCN(t, s) != "one" || len(errs) != 1 {
		t.Fatalf("mismatched pair must keep the old material; errors %v", errs)
	}
	write(t, key, k2)
	if servedCN(t, s) != "two" || s.reloads != 1 {
		t.Fatal("a sound new pair must be served")
	}
	if err := os.Remove(ca); err != nil {
		t.Fatal(err)
	}
	if servedCN(t, s) != "two" || !errors.Is(errs[len(errs)-1], os.ErrNotExist) {
		t.Fatal("a briefly missing file must keep the current material")
	}
	write(t, ca, []byte("not a certificate"))
	if servedCN(t, s) != "two" || !strings.Contains(errs[len(errs)-1].Error(), "no certificate") {
		t.Fatalf("an empty CA bundle must keep the current material: %v", errs[len(errs)-1])
	}
}

func TestServingTLSRefusesToStartWithBadMaterial(t *testing.T) {
	dir := t.TempDir()
	c1, _ := pair(t, "one")
	_, k2 := pair(t, "two")
	write(t, filepath.Join(dir, "tls.crt"), c1)
	write(t, filepath.Join(dir, "tls.key"), k2)
	write(t, filepath.Join(dir, "ca.crt"), c1)
	if _, err := newServingTLS(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"),
		filepath.Join(dir, "ca.crt"), ""); err == nil {
		t.Fatal("a key that does not match the certificate must be refused")
	}
}

func TestRevokedClientNamesAreRefusedUntilTheirLineGoes(t *testing.T) {
	dir := t.TempDir()
	crt, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	revoked := filepath.Join(dir, "revoked-clients")
	c1, k1 := pair(t, "serving")
	write(t, crt, c1)
	write(t, key, k1)
	write(t, ca, c1)
	s, err := newServingTLS(crt, key, ca, revoked) // the file does not exist yet: nothing revoked
	if err != nil {
		t.Fatal(err)
	}
	verify := func(cn string) error {
		certPEM, _ := pair(t, cn)
		block, _ := pem.Decode(certPEM)
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return s.Current().VerifyPeerCertificate(nil, [][]*x509.Certificate{{leaf}})
	}
	if verify("etcdstorage:x:ns/b") != nil {
		t.Fatal("nothing is revoked without the file")
	}
	write(t, revoked, []byte("2027-01-01T00:00:00Z etcdstorage:x:ns/b\n\n"))
	if err := verify("etcdstorage:x:ns/b"); err == nil || !strings.Contains(err.Error(), "spec.clientCertSecret") {
		t.Fatalf("a revoked name must be refused, naming why: %v", err)
	}
	if verify("etcdstorage:x:ns/a") != nil || verify("etcdstorage:x:ns/b2") != nil {
		t.Fatal("only the revoked name is refused")
	}
	if err := os.Remove(revoked); err != nil {
		t.Fatal(err)
	}
	if verify("etcdstorage:x:ns/b") != nil {
		t.Fatal("once its line is gone the name is accepted again")
	}
}

func TestFlagsNeedEverythingAndAPrefixWithSlashes(t *testing.T) {
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Fatalf("missing flags: %v", err)
	}
	base := []string{"--endpoints=https://e:2379", "--cacert=a", "--cert=b", "--key=c", "--cert-file=d",
		"--key-file=e", "--trusted-ca-file=f"}
	if _, err := parseFlags(append(base, "--namespace=/foo")); err == nil || !strings.Contains(err.Error(), "foobar") {
		t.Fatalf("prefix without trailing slash: %v", err)
	}
	o, err := parseFlags(append(base, "--namespace=/foo/"))
	if err != nil || o.reportVersion != "" || o.listen != "0.0.0.0:2379" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}
