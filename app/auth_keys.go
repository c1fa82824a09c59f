package app

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/streamrpc/streamrpc/streams"
)

// API keys are configured hashed, in STREAMRPC_API_KEYS: entries separated by
// ";" or newlines, each
//
//	id:sha256hex:scopes
//
// where id names the key (it becomes the principal id), sha256hex is the
// lowercase hex SHA-256 of the whole key, and scopes are space-separated
// (see scopes.go). `streamrpc hash-key` prints a new key and its entry.
//
// A plain SHA-256 is enough here: keys are 256 random bits, not passwords, so
// there is nothing for a slow hash to protect against, and the hot path stays
// one hash per request.

// apiKeyPrefix marks streamrpc keys, so that leaked ones are easy to grep for.
const apiKeyPrefix = "srpc_"

// apiKey is one configured key.
type apiKey struct {
	hash      [sha256.Size]byte
	principal *Principal // shared by every request with this key: read only
}

// parseAPIKeys parses STREAMRPC_API_KEYS. Errors wrap ErrConfig and never
// quote a hash in full.
func parseAPIKeys(spec string) ([]apiKey, error) {
	var keys []apiKey
	seen := map[string]bool{}
	for _, entry := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' || r == '\r' }) {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(entry, ":")
		hashHex, scopeList, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: STREAMRPC_API_KEYS: entry %q is not id:sha256hex:scopes", ErrConfig, truncate(id, 64))
		}
		if err := streams.ValidateName("API key id", id); err != nil {
			return nil, fmt.Errorf("%w: STREAMRPC_API_KEYS: %w", ErrConfig, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: STREAMRPC_API_KEYS: key id %q is listed twice", ErrConfig, id)
		}
		seen[id] = true
		raw, err := hex.DecodeString(strings.ToLower(hashHex))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: STREAMRPC_API_KEYS: key %q: the hash must be 64 hex digits (the SHA-256 of the key; see streamrpc hash-key)", ErrConfig, id)
		}
		scopes, err := parseScopes(strings.Fields(scopeList))
		if err != nil {
			return nil, fmt.Errorf("%w: STREAMRPC_API_KEYS: key %q: %w", ErrConfig, id, err)
		}
		k := apiKey{principal: newPrincipal(id, "api_key", scopes)}
		copy(k.hash[:], raw)
		keys = append(keys, k)
	}
	return keys, nil
}

// lookupAPIKey returns the principal of key, or nil. It hashes once and
// compares with every configured hash in constant time, without stopping at
// a match, so that timing tells nothing about which hash (or how much of it)
// matched.
func lookupAPIKey(keys []apiKey, key string) *Principal {
	// Keys fit the stack buffer: hashing them then does not allocate.
	var buf [128]byte
	sum := sha256.Sum256(append(buf[:0], key...))
	var found *Principal
	for i := range keys {
		if subtle.ConstantTimeCompare(sum[:], keys[i].hash[:]) == 1 {
			found = keys[i].principal
		}
	}
	return found
}

// NewAPIKey returns a new random API key and the hex SHA-256 to configure.
func NewAPIKey() (key, sha256Hex string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("app: reading random bytes: %w", err)
	}
	key = apiKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, HashAPIKey(key), nil
}

// HashAPIKey is the hash STREAMRPC_API_KEYS holds for key.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
