package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/streamrpc/streamrpc/streams"
)

// tlsServerName is the only name on the server certificate: a client that
// dials 127.0.0.1 must be told to expect it (STREAMRPC_REDIS_TLS_SERVER_NAME).
const tlsServerName = "redis.test"

// testPKI is a CA with a server and a client certificate it signed, as PEM
// files in dir; other is a second CA that signed nothing Redis trusts.
type testPKI struct {
	dir                          string
	caCert, otherCA              string
	clientCert, clientKey        string
	strangerCert, strangerKey    string // a client certificate signed by the other CA
	caPEM, serverPEM, serverKPEM []byte
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestPKI writes the PKI's files in dir.
func newTestPKI(t testing.TB, dir string) *testPKI {
	t.Helper()
	p := &testPKI{dir: dir}
	ca := newCA(t, "streamrpc test CA")
	other := newCA(t, "some other CA")
	p.caPEM = certPEM(ca.cert.Raw)
	p.caCert = p.write(t, "ca.pem", p.caPEM)
	p.otherCA = p.write(t, "other-ca.pem", certPEM(other.cert.Raw))
	p.serverPEM, p.serverKPEM = issue(t, ca, tlsServerName, x509.ExtKeyUsageServerAuth)
	c, k := issue(t, ca, "consumer", x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = p.write(t, "client.pem", c), p.write(t, "client-key.pem", k)
	c, k = issue(t, other, "stranger", x509.ExtKeyUsageClientAuth)
	p.strangerCert, p.strangerKey = p.write(t, "stranger.pem", c), p.write(t, "stranger-key.pem", k)
	return p
}

func (p *testPKI) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newCA(t testing.TB, name string) issuer {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert: cert, key: key}
}

// issue returns a leaf certificate for name, signed by ca, and its key, as PEM.
func issue(t testing.TB, ca issuer, name string, usage x509.ExtKeyUsage) (certPEMBytes, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM(der), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// startTLSRedis runs Redis with TLS only (no plain port), the PKI's server
// certificate, and client certificates required or not, until the test ends.
// It returns the rediss:// URL.
func startTLSRedis(t *testing.T, p *testPKI, authClients string) string {
	t.Helper()
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*redisReadyTimeout)
	defer cancel()
	ctr, url, err := runTLSRedis(ctx, p, authClients)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start TLS redis: %v", err)
	}
	return url
}

// runTLSRedis starts the container of startTLSRedis; the caller removes it
// (it may be non-nil on error).
func runTLSRedis(ctx context.Context, p *testPKI, authClients string) (*testcontainers.DockerContainer, string, error) {
	file := func(b []byte, path string) testcontainers.ContainerFile {
		return testcontainers.ContainerFile{Reader: bytes.NewReader(b), ContainerFilePath: path, FileMode: 0o644}
	}
	ctr, err := testcontainers.Run(ctx, redisImage,
		testcontainers.WithFiles(
			file(p.caPEM, "/tls/ca.pem"), file(p.serverPEM, "/tls/server.pem"), file(p.serverKPEM, "/tls/server-key.pem")),
		testcontainers.WithCmd("redis-server", "--protected-mode", "no", "--port", "0", "--tls-port", "6379",
			"--tls-cert-file", "/tls/server.pem", "--tls-key-file", "/tls/server-key.pem",
			"--tls-ca-cert-file", "/tls/ca.pem", "--tls-auth-clients", authClients),
		testcontainers.WithExposedPorts(redisPort),
		testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections").WithStartupTimeout(redisReadyTimeout)),
	)
	if err != nil {
		return ctr, "", err
	}
	u, err := ctr.PortEndpoint(ctx, redisPort, "rediss")
	if err != nil {
		return ctr, "", err
	}
	return ctr, u + "/0", nil
}

// pingWith connects with opts and returns PING's error.
func pingWith(t *testing.T, opts streams.RedisOptions) error {
	t.Helper()
	opts.DialTimeout = 5 * time.Second
	rdb, err := streams.Connect(opts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// pingCase is one way to connect, and what PING should give.
type pingCase struct {
	name    string
	opts    streams.RedisOptions
	wantErr string // "" for success; else a substring of the error
}

func runPingCases(t *testing.T, cases []pingCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := pingWith(t, tc.opts)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("PING: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("PING: got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestRedisTLS connects to a TLS-only Redis: with the CA (and the server's
// name) it works (end to end through an edge and a consumer: the cases of
// TestTopologies/tls); without the CA or with the wrong name it fails naming
// the certificate problem; with client certificates required, only a client
// certificate the CA signed gets in.
func TestRedisTLS(t *testing.T) {
	t.Run("server authentication", func(t *testing.T) {
		r := tlsTopology.redis(t) // the Redis of TestTopologies/tls: client certificates not asked for
		p, url := r.pki, r.URL
		cases := []pingCase{
			{"CA and server name", streams.RedisOptions{URL: url, TLSCA: p.caCert, TLSServerName: tlsServerName}, ""},
			{"without the CA", streams.RedisOptions{URL: url, TLSServerName: tlsServerName}, "certificate signed by unknown authority"},
			{"another CA", streams.RedisOptions{URL: url, TLSCA: p.otherCA, TLSServerName: tlsServerName}, "certificate signed by unknown authority"},
			{"wrong server name", streams.RedisOptions{URL: url, TLSCA: p.caCert}, "x509: cannot validate certificate for 127.0.0.1"},
			{"insecure skip verify (development only)", streams.RedisOptions{URL: url, TLSInsecureSkipVerify: true}, ""},
		}
		runPingCases(t, cases)
	})

	t.Run("client certificates required", func(t *testing.T) {
		p := newTestPKI(t, t.TempDir())
		url := startTLSRedis(t, p, "yes")
		cases := []pingCase{
			{"client certificate from the CA", streams.RedisOptions{URL: url, TLSCA: p.caCert, TLSServerName: tlsServerName, TLSCert: p.clientCert, TLSKey: p.clientKey}, ""},
			{"no client certificate", streams.RedisOptions{URL: url, TLSCA: p.caCert, TLSServerName: tlsServerName}, "tls: certificate required"},
			// The server's alert for a certificate it cannot verify varies
			// with the TLS library (unknown certificate authority, bad
			// certificate): any TLS alert will do.
			{"client certificate from another CA", streams.RedisOptions{URL: url, TLSCA: p.caCert, TLSServerName: tlsServerName, TLSCert: p.strangerCert, TLSKey: p.strangerKey}, "tls: "},
		}
		runPingCases(t, cases)
	})
}
