package streams

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeSelfSigned writes a self-signed certificate and its key as PEM files
// in dir and returns their paths.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestConnectTLSSettings checks how the TLS settings are read; dialing a
// real TLS Redis is integration/tls_test.go's.
func TestConnectTLSSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		opts    RedisOptions
		wantErr error
		check   func(t *testing.T, o *redis.Options)
	}{
		{name: "plain", opts: RedisOptions{URL: "redis://127.0.0.1:6379/0"},
			check: func(t *testing.T, o *redis.Options) {
				if o.TLSConfig != nil {
					t.Fatal("TLS for a redis:// URL")
				}
			}},
		{name: "rediss with system roots", opts: RedisOptions{URL: "rediss://redis.example:6380/0"},
			check: func(t *testing.T, o *redis.Options) {
				if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.TLSConfig.RootCAs != nil || o.TLSConfig.InsecureSkipVerify {
					t.Fatalf("TLS config %+v", o.TLSConfig)
				}
			}},
		{name: "CA, client pair and server name", opts: RedisOptions{URL: "rediss://10.0.0.1:6380/0", TLSCA: cert, TLSCert: cert, TLSKey: key, TLSServerName: "redis.internal"},
			check: func(t *testing.T, o *redis.Options) {
				c := o.TLSConfig
				if c == nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "redis.internal" || c.MinVersion < 0x0303 {
					t.Fatalf("TLS config %+v", c)
				}
			}},
		{name: "insecure skip verify", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSInsecureSkipVerify: true},
			check: func(t *testing.T, o *redis.Options) {
				if !o.TLSConfig.InsecureSkipVerify {
					t.Fatal("verification still on")
				}
			}},
		{name: "TLS settings with a plain URL", opts: RedisOptions{URL: "redis://127.0.0.1:6379/0", TLSCA: cert}, wantErr: ErrRedisTLS},
		{name: "missing CA file", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSCA: filepath.Join(dir, "nope.pem")}, wantErr: ErrRedisTLS},
		{name: "CA file without PEM", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSCA: notPEM}, wantErr: ErrRedisTLS},
		{name: "certificate without key", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSCert: cert}, wantErr: ErrRedisTLS},
		{name: "key without certificate", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSKey: key}, wantErr: ErrRedisTLS},
		{name: "key that is not a key", opts: RedisOptions{URL: "rediss://127.0.0.1:6380/0", TLSCert: cert, TLSKey: notPEM}, wantErr: ErrRedisTLS},
		{name: "empty URL", opts: RedisOptions{}, wantErr: ErrRedisURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, err := Connect(tc.opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rdb.Close() })
			tc.check(t, rdb.(*redis.Client).Options())
		})
	}
}

// TestConnectModes checks which kind of client each URL scheme makes, and the
// errors for URLs that cannot be used.
func TestConnectModes(t *testing.T) {
	cases := []struct {
		name    string
		url     string
		want    string // "single", "cluster", "sentinel"
		wantErr string
	}{
		{name: "one node", url: "redis://127.0.0.1:6379/0", want: "single"},
		{name: "one node over TLS", url: "rediss://user:pw@redis.example:6380", want: "single"},
		{name: "cluster", url: "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", want: "cluster"},
		{name: "cluster over TLS", url: "rediss+cluster://u:p@h1:7000?addr=h2:7000", want: "cluster"},
		{name: "sentinel", url: "redis+sentinel://127.0.0.1:26379?master_name=mymaster&addr=127.0.0.1:26380&password=pw", want: "sentinel"},
		{name: "sentinel without master name", url: "redis+sentinel://127.0.0.1:26379", wantErr: "master_name"},
		{name: "no scheme", url: "127.0.0.1:6379", wantErr: "no scheme"},
		{name: "unknown scheme", url: "http://127.0.0.1:6379", wantErr: "unknown scheme"},
		{name: "unknown mode", url: "redis+ring://127.0.0.1:6379", wantErr: "unknown scheme"},
		{name: "bad cluster query", url: "redis+cluster://127.0.0.1:7000?nonsense=1", wantErr: "nonsense"},
		{name: "empty", url: "", wantErr: "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, err := Connect(RedisOptions{URL: tc.url})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrRedisURL) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Connect(%q) = %v, want ErrRedisURL mentioning %q", tc.url, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			got := "single"
			switch c := rdb.(type) {
			case *redis.ClusterClient:
				got = "cluster"
			case *redis.Client:
				if c.Options().Addr == "FailoverClient" {
					got = "sentinel"
				}
			}
			if got != tc.want {
				t.Fatalf("Connect(%q) made a %s client (%T), want %s", tc.url, got, rdb, tc.want)
			}
		})
	}
}

// TestConnectTLSEveryMode checks that the TLS settings reach the client of
// every mode: the Cluster's nodes and the Sentinel-managed primary are dialled
// with the same CA, client certificate and server name as a single node.
func TestConnectTLSEveryMode(t *testing.T) {
	cert, key := writeSelfSigned(t, t.TempDir())
	for _, u := range []string{
		"rediss://10.0.0.1:6380/0",
		"rediss+cluster://10.0.0.1:7000?addr=10.0.0.2:7000",
		"rediss+sentinel://10.0.0.1:26379?master_name=m&addr=10.0.0.2:26379",
	} {
		t.Run(u, func(t *testing.T) {
			rdb, err := Connect(RedisOptions{URL: u, TLSCA: cert, TLSCert: cert, TLSKey: key, TLSServerName: "redis.internal"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rdb.Close() })
			var c *tls.Config
			switch r := rdb.(type) {
			case *redis.ClusterClient:
				c = r.Options().TLSConfig
			case *redis.Client:
				c = r.Options().TLSConfig
			}
			if c == nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "redis.internal" || c.MinVersion < tls.VersionTLS12 {
				t.Fatalf("TLS config %+v", c)
			}
		})
	}
	if _, err := Connect(RedisOptions{URL: "redis+cluster://10.0.0.1:7000", TLSCA: cert}); !errors.Is(err, ErrRedisTLS) {
		t.Fatalf("TLS settings with a plain cluster URL: %v, want ErrRedisTLS", err)
	}
}

// TestUnavailableErrors: the errors a Redis outage or failover produces are
// ErrUnavailable (the edge answers 503), and a command's own error is not.
func TestUnavailableErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection closed mid-command", io.EOF, true},
		{"connection cut mid-reply", io.ErrUnexpectedEOF, true},
		{"refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{"cluster down", serverError("CLUSTERDOWN The cluster is down"), true},
		{"slot moving", serverError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"demoted master", serverError("READONLY You can't write against a read only replica."), true},
		{"loading", serverError("LOADING Redis is loading the dataset in memory"), true},
		{"pool exhausted", redis.ErrPoolTimeout, true},
		{"a script's own error", serverError("ERR user_script:1: oops"), false},
		{"wrong type", serverError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := errors.Is(unavailable(tc.err), ErrUnavailable); got != tc.want {
				t.Fatalf("unavailable(%v) is ErrUnavailable: %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// serverError is an error reply from a Redis server, as go-redis returns one.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}
