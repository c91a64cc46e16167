//go:build deps

// Package deps pins, during early development, the modules later packages will
// import, so that go.sum holds them. It is never built.
package deps

import (
	_ "github.com/emmansun/gmsm/pkcs7"
	_ "github.com/emmansun/gmsm/sm2"
	_ "github.com/emmansun/gmsm/sm3"
	_ "github.com/emmansun/gmsm/sm4"
	_ "github.com/emmansun/gmsm/smx509"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/miekg/pkcs11"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/tjfoc/gmsm/sm2"
	_ "github.com/tjfoc/gmsm/x509"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/hkdf"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
