package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// servingTLS holds the tenant-facing TLS configuration built from three files (serving cert, key,
// tenant client CA bundle) and rebuilds it when their bytes change, checked on every new handshake.
// kubelet swaps Secret/ConfigMap volumes atomically, so a rotation reaches new connections without a
// restart; established connections keep what they negotiated. Material that does not parse or whose
// key does not match keeps the previous configuration (logged by the caller through onError).
type servingTLS struct {
	certFile, keyFile, caFile string
	onError                   func(error)
	onReload                  func(int)

	mu      sync.Mutex
	raw     [3][]byte
	config  *tls.Config
	reloads int
}

func newServingTLS(certFile, keyFile, caFile string) (*servingTLS, error) {
	s := &servingTLS{certFile: certFile, keyFile: keyFile, caFile: caFile,
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

func (s *servingTLS) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, f := range []string{s.certFile, s.keyFile, s.caFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return raw, err
		}
		raw[i] = b
	}
	return raw, nil
}

// buildServingConfig: the serving pair and a pool of client CAs; client certificates are required.
func buildServingConfig(raw [3][]byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("serving certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw[2]) {
		return nil, errors.New("client CA bundle has no certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
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
	if bytes.Equal(raw[0], s.raw[0]) && bytes.Equal(raw[1], s.raw[1]) && bytes.Equal(raw[2], s.raw[2]) {
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
