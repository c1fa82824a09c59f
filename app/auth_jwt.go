package app

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT bearer tokens, verified with github.com/golang-jwt/jwt/v5:
//
//   - HS256 with STREAMRPC_JWT_HS256_SECRET;
//   - RS256 or ES256 with the public key in STREAMRPC_JWT_PUBLIC_KEY_FILE (PEM),
//     or the keys of a JWKS file, STREAMRPC_JWT_JWKS_FILE, chosen by "kid".
//
// Only the algorithms of the configured keys are accepted (no "none", no
// HS256 signed with a public key). exp is required; exp, nbf, iss and aud are
// checked with STREAMRPC_JWT_LEEWAY; sub names the principal. Keys are read
// once, at start: the hot path touches no file and no network.

// ErrJWTKeys: the configured JWT keys cannot be read.
var ErrJWTKeys = errors.New("bad JWT key")

const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// jwtVerifier checks JWTs.
type jwtVerifier struct {
	parser   *jwt.Parser
	leeway   time.Duration
	secret   []byte
	pubKey   crypto.PublicKey   // from the PEM file; nil if none
	pubAlg   string             // RS256 or ES256, by pubKey's type
	jwks     map[string]jwksKey // by kid
	onlyJWKS *jwksKey           // a JWKS of one key also verifies tokens without kid
}

type jwksKey struct {
	alg string
	key crypto.PublicKey
}

// tokenClaims are the claims streamrpc reads.
type tokenClaims struct {
	jwt.RegisteredClaims
	// Scope is OAuth 2.0's space-separated scope (RFC 8693 §4.2).
	Scope string `json:"scope,omitempty"`
	// Scopes is the same as an array, as some identity providers send it.
	Scopes []string `json:"scopes,omitempty"`
}

// newJWTVerifier reads the configured keys; nil when no JWT key is configured.
func newJWTVerifier(cfg Config) (*jwtVerifier, error) {
	if !cfg.jwtConfigured() {
		return nil, nil
	}
	v := &jwtVerifier{leeway: cfg.JWTLeeway}
	var algs []string
	if cfg.JWTHS256Secret != "" {
		v.secret = []byte(cfg.JWTHS256Secret)
		algs = append(algs, algHS256)
	}
	if cfg.JWTPublicKeyFile != "" {
		key, alg, err := readPublicKeyPEM(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, err
		}
		v.pubKey, v.pubAlg = key, alg
		algs = append(algs, alg)
	}
	if cfg.JWTJWKSFile != "" {
		keys, err := readJWKS(cfg.JWTJWKSFile)
		if err != nil {
			return nil, err
		}
		v.jwks = keys
		for _, k := range keys {
			algs = append(algs, k.alg)
			if len(keys) == 1 {
				v.onlyJWKS = &k
			}
		}
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithLeeway(v.leeway),
		jwt.WithIssuer(cfg.JWTIssuer),
		jwt.WithAudience(cfg.JWTAudience),
		jwt.WithExpirationRequired(),
	)
	return v, nil
}

// verify checks a token and returns its principal. The error never holds the
// token.
func (v *jwtVerifier) verify(token string) (*Principal, error) {
	var claims tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &claims, v.keyFor); err != nil {
		return nil, err
	}
	if claims.Subject == "" {
		return nil, errors.New("token has no sub")
	}
	scopes := strings.Fields(claims.Scope)
	scopes = append(scopes, claims.Scopes...)
	p := newPrincipal(claims.Subject, "jwt", scopesFromToken(scopes))
	if claims.ExpiresAt != nil {
		p.Expires = claims.ExpiresAt.Add(v.leeway)
	}
	return p, nil
}

// keyFor picks the verification key by the token's alg and kid. The parser
// has already refused algorithms outside the configured ones.
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == algHS256 {
		if v.secret == nil {
			return nil, errors.New("HS256 is not configured")
		}
		return v.secret, nil
	}
	if kid, ok := t.Header["kid"].(string); ok && v.jwks != nil {
		if k, ok := v.jwks[kid]; ok && k.alg == alg {
			return k.key, nil
		}
		if v.pubKey == nil {
			return nil, fmt.Errorf("no key with kid %q", truncate(kid, 64))
		}
	}
	if v.pubKey != nil && v.pubAlg == alg {
		return v.pubKey, nil
	}
	if v.onlyJWKS != nil && v.onlyJWKS.alg == alg {
		return v.onlyJWKS.key, nil
	}
	return nil, fmt.Errorf("no %s key for this token", alg)
}

// readPublicKeyPEM reads an RSA (RS256) or P-256 (ES256) public key.
func readPublicKeyPEM(file string) (crypto.PublicKey, string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("%w: STREAMRPC_JWT_PUBLIC_KEY_FILE: %w", ErrJWTKeys, err)
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return k, algRS256, nil
	}
	k, err := jwt.ParseECPublicKeyFromPEM(b)
	if err != nil {
		return nil, "", fmt.Errorf("%w: STREAMRPC_JWT_PUBLIC_KEY_FILE %s: not an RSA or EC public key in PEM", ErrJWTKeys, file)
	}
	if k.Curve != elliptic.P256() {
		return nil, "", fmt.Errorf("%w: STREAMRPC_JWT_PUBLIC_KEY_FILE %s: ES256 needs a P-256 key", ErrJWTKeys, file)
	}
	return k, algES256, nil
}

// readJWKS reads a JSON Web Key Set (RFC 7517) of RSA and P-256 keys. Keys
// meant for encryption ("use":"enc") and of other types are skipped; every
// key kept must have a kid, unless it is the only one.
func readJWKS(file string) (map[string]jwksKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE: %w", ErrJWTKeys, err)
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE %s: %w", ErrJWTKeys, file, err)
	}
	keys := map[string]jwksKey{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var jk jwksKey
		switch {
		case k.Kty == "RSA" && (k.Alg == "" || k.Alg == algRS256):
			n, err1 := b64Int(k.N)
			e, err2 := b64Int(k.E)
			if err1 != nil || err2 != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || n.BitLen() < 2048 {
				return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE %s: key %d: bad RSA key (n must be 2048 bits or more)", ErrJWTKeys, file, i)
			}
			jk = jwksKey{alg: algRS256, key: &rsa.PublicKey{N: n, E: int(e.Int64())}}
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == algES256):
			x, err1 := base64.RawURLEncoding.DecodeString(k.X)
			y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE %s: key %d: bad P-256 key", ErrJWTKeys, file, i)
			}
			// ParseUncompressedPublicKey also checks the point is on the curve.
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE %s: key %d: %w", ErrJWTKeys, file, i, err)
			}
			jk = jwksKey{alg: algES256, key: pub}
		default:
			continue
		}
		keys[k.Kid] = jk
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: STREAMRPC_JWT_JWKS_FILE %s: no RS256 or ES256 signing key", ErrJWTKeys, file)
	}
	return keys, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}
