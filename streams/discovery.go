package streams

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Registry returns every registered handler with its methods, by name (each
// handler's methods by name too): what the edge's discovery documents
// (OpenAPI, OpenRPC) are generated from. Two round trips: the handler names,
// then one pipeline of each handler's registration and methods. A handler
// whose methods are gone (forgotten meanwhile) is left out.
func (c *Client) Registry(ctx context.Context) ([]HandlerInfo, error) {
	names, err := c.Handlers(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	pipe := c.rdb.Pipeline()
	infos := make([]*redis.StringCmd, len(names))
	methods := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		infos[i] = pipe.Get(ctx, infoKey(n))
		methods[i] = pipe.HGetAll(ctx, methodsKey(n))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	out := make([]HandlerInfo, 0, len(names))
	for i, n := range names {
		var hi HandlerInfo
		if s, err := infos[i].Result(); err == nil {
			_ = json.Unmarshal([]byte(s), &hi)
		}
		hi.Name, hi.Methods = n, nil
		for m, js := range methods[i].Val() {
			if strings.HasPrefix(m, "$") { // settings, not methods
				continue
			}
			var mi MethodInfo
			_ = json.Unmarshal([]byte(js), &mi)
			mi.Name = m
			hi.Methods = append(hi.Methods, mi)
		}
		if len(hi.Methods) == 0 {
			continue
		}
		sort.Slice(hi.Methods, func(a, b int) bool { return hi.Methods[a].Name < hi.Methods[b].Name })
		out = append(out, hi)
	}
	return out, nil
}
