package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// servingTLS holds the tenant-facing TLS configuration built from four files (serving cert, key,
// tenant client CA bundle, revoked client names) and rebuilds it when their bytes change, checked on every
// new handshake.
// kubelet swaps Secret/ConfigMap volumes atomically, so a rotation reaches new connections without a
// restart; established connections keep what they negotiated. Material that does not parse or whose
// key does not match keeps the previous configuration (logged by the caller through onError).
type servingTLS struct {
	certFile, keyFile, caFile, revokedFile string
	onError                                func(error)
	onReload                               func(int)

	mu      sync.Mutex
	raw     [4][]byte
	config  *tls.Config
	reloads int
}

// newServingTLS: revokedFile may be empty, or name a file that does not exist (nothing revoked).
func newServingTLS(certFile, keyFile, caFile, revokedFile string) (*servingTLS, error) {
	s := &servingTLS{certFile: certFile, keyFile: keyFile, caFile: caFile, revokedFile: revokedFile,
		onError: func(error) {}, onReload: func(int) {}}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	cfg, err := buildServingConfig(raw)
	if err != nil {
		return nil, err
	}
	s.raw, s.config = raw, cfg
	return s, nil
}

func (s *servingTLS) read() ([4][]byte, error) {
	var raw [4][]byte
	for i, f := range []string{s.certFile, s.keyFile, s.caFile, s.revokedFile} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if i == 3 && errors.Is(err, fs.ErrNotExist) {
			continue // the operator writes the key only while something is revoked
		}
		if err != nil {
			return raw, err
		}
		raw[i] = b
	}
	return raw, nil
}

// revokedNames reads the operator's list of revoked client certificates: one per line, "<notAfter> <Common
// Name>" (the operator drops a line once every certificate of that name has expired). Certificates are
// revoked by name, which is one per delivery destination: every certificate ever issued to a destination
// removed from spec.clientCertSecret, renewed ones included, is refused.
func revokedNames(raw []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if _, name, ok := strings.Cut(strings.TrimSpace(line), " "); ok && name != "" {
			out[name] = true
		}
	}
	return out
}

// buildServingConfig: the serving pair and a pool of client CAs; client certificates are required and
// must not be revoked.
func buildServingConfig(raw [4][]byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("serving certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw[2]) {
		return nil, errors.New("client CA bundle has no certificate")
	}
	revoked := revokedNames(raw[3])
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) > 0 && revoked[chains[0][0].Subject.CommonName] {
				return fmt.Errorf("client certificate %q is revoked: its destination left the EtcdStorage's "+
					"spec.clientCertSecret", chains[0][0].Subject.CommonName)
			}
			return nil
		},
	}, nil
}

// Current re-reads the files and returns the configuration to use for a new handshake.
func (s *servingTLS) Current() *tls.Config {
	raw, err := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.onError(fmt.Errorf("keeping current TLS material: %w", err))
		return s.config
	}
	if bytes.Equal(raw[0], s.raw[0]) && bytes.Equal(raw[1], s.raw[1]) && bytes.Equal(raw[2], s.raw[2]) &&
		bytes.Equal(raw[3], s.raw[3]) {
		return s.config
	}
	cfg, err := buildServingConfig(raw)
	if err != nil {
		s.onError(fmt.Errorf("keeping current TLS material: %w", err))
		return s.config
	}
	s.raw, s.config = raw, cfg
	s.reloads++
	s.onReload(s.reloads)
	return cfg
}

// ServerConfig is what the gRPC server is given: every handshake asks Current.
func (s *servingTLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.Current(), nil
		},
	}
}
