package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrTracingConfig wraps errors in the OTEL_* settings.
var ErrTracingConfig = errors.New("tracing settings (OTEL_*)")

// tracingEnabled reports whether the standard OTEL_* variables ask for
// traces: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set while the
// exporter is unset. OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none
// turn it off. Only OTLP over HTTP (http/protobuf) is built in.
func tracingEnabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	case "otlp":
	default:
		return false, fmt.Errorf("%w: OTEL_TRACES_EXPORTER %q: only otlp (or none) is supported", ErrTracingConfig, exp)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(name); p != "" {
			if p != "http/protobuf" {
				return false, fmt.Errorf("%w: %s %q: only http/protobuf is supported", ErrTracingConfig, name, p)
			}
			break // the traces-specific setting wins
		}
	}
	return true, nil
}

// setupTracing returns the tracer provider the OTEL_* variables ask for, or
// nil (tracing off: the edge and consumer then do no tracing work at all),
// and a func that flushes and stops it. service is the default
// service.name; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it.
// The exporter reads its own settings: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
// _HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE; the sampler reads
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default: parentbased_always_on).
func setupTracing(ctx context.Context, service string) (trace.TracerProvider, func(), error) {
	on, err := tracingEnabled(os.Getenv)
	if err != nil || !on {
		return nil, func() {}, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the OTLP exporter: %v", ErrTracingConfig, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // after: OTEL_SERVICE_NAME wins over the default
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && res == nil {
		return nil, nil, fmt.Errorf("%w: resource: %v", ErrTracingConfig, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx) // flushes the spans still batched
	}, nil
}
