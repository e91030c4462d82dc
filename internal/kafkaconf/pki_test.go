package kafkaconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// serverName is the only name in the broker certificate: clients must set
// MDS_KAFKA_TLS_SERVER_NAME to it, since they dial 127.0.0.1.
const serverName = "kafka.test"

// pki is a throwaway certificate authority with a broker certificate and a
// client certificate, written as PEM files.
type pki struct {
	caFile, certFile, keyFile string // the client's files
	otherCAFile               string // a CA that signed nothing here
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := newCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "mds test ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	otherCA, _ := newCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "other ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	srvCert, srvKey := newCert(t, caCert, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	cliCert, cliKey := newCert(t, caCert, caKey, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "mds"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p := pki{
		caFile:      writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw),
		otherCAFile: writePEM(t, dir, "other-ca.pem", "CERTIFICATE", otherCA.Raw),
		certFile:    writePEM(t, dir, "client.pem", "CERTIFICATE", cliCert.Raw),
		keyFile:     writePEM(t, dir, "client-key.pem", "PRIVATE KEY", marshalKey(t, cliKey)),
		server:      tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey},
		pool:        x509.NewCertPool(),
	}
	p.pool.AddCert(caCert)
	return p
}

// serverTLS is the broker side; requireClientCert makes it mutual TLS.
func (p pki) serverTLS(requireClientCert bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

var serial atomic.Int64

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
