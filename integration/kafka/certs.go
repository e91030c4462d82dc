package kafkatest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs are the PEM files of a cluster's TLS listeners: a CA that signed
// the brokers' certificate (for 127.0.0.1 and localhost) and a client
// certificate, whose principal on the mutual-TLS listener is
// "User:CN=<ClientCN>".
type Certs struct {
	CAFile         string // PEM CA certificate: trust it to reach the brokers
	ClientCertFile string // PEM client certificate, for mutual TLS
	ClientKeyFile  string // PEM client key (PKCS #8)
	ClientCN       string

	serverStore string // broker key and certificate in one PEM file (Kafka's PEM keystore)
}

// ClientCN is the common name of the client certificate.
const ClientCN = "mds-client"

// writeCerts generates the CA, broker and client certificates into dir.
func writeCerts(dir string) (*Certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mds kafkatest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, server bool) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(7 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		pk, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
	}
	srvCert, srvKey, err := leaf(2, "localhost", x509.ExtKeyUsageServerAuth, true)
	if err != nil {
		return nil, fmt.Errorf("broker certificate: %w", err)
	}
	cliCert, cliKey, err := leaf(3, ClientCN, x509.ExtKeyUsageClientAuth, false)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	c := &Certs{
		CAFile:         filepath.Join(dir, "ca.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
		ClientCN:       ClientCN,
		serverStore:    filepath.Join(dir, "broker-keystore.pem"),
	}
	files := map[string][]byte{
		c.CAFile:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		c.ClientCertFile: cliCert,
		c.ClientKeyFile:  cliKey,
		c.serverStore:    append(srvKey, srvCert...),
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}
