package proxy_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/pbkdf2"

	"github.com/shadowproxy/shadowproxy/config"
)

func TestPassthroughAuth(t *testing.T) {
	p := startProxy(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		user, password string
		wantCode       string // "" = login succeeds
	}{
		{"scramuser", "scram-pass", ""},
		{"md5user", "md5-pass", ""},
		{"clearuser", "clear-pass", ""},
		{"scramuser", "wrong", "28P01"},
		{"md5user", "wrong", "28P01"},
		{"clearuser", "wrong", "28P01"},
		{"nosuchuser", "x", "28P01"},
	} {
		t.Run(tc.user+"/"+tc.password, func(t *testing.T) {
			c, err := pgx.Connect(ctx, p.url(tc.user, tc.password, "postgres"))
			if tc.wantCode != "" {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tc.wantCode {
					t.Fatalf("want SQLSTATE %s, got %v", tc.wantCode, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var who string
			if err := c.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != tc.user {
				t.Fatalf("current_user %q, %v", who, err)
			}
		})
	}
}

// scramVerifier builds a pg_authid-style SCRAM-SHA-256 verifier for a
// password, as Postgres would store it.
func scramVerifier(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	const iter = 4096
	salted := pbkdf2.Key([]byte(password), salt, iter, 32, sha256.New)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(server))
}

func TestConfiguredUsersAuth(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.Auth.Mode = config.AuthUsers
		c.Auth.Users = []config.User{{Name: "alice", SCRAMVerifier: scramVerifier("alice-secret")}}
		c.Auth.UpstreamUser = "app"
		c.Auth.UpstreamPassword = "app-pass"
		c.Old = pg.URL("app", "", "postgres")
	})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.url("alice", "alice-secret", "shop", "application_name", "alice-app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var user, db, app string
	if err := c.QueryRow(ctx, "select current_user, current_database(), current_setting('application_name')").Scan(&user, &db, &app); err != nil {
		t.Fatal(err)
	}
	if user != "app" || db != "shop" || app != "alice-app" {
		t.Fatalf("upstream session is %s@%s (%s); want the proxy's own user app@shop with the client's application_name", user, db, app)
	}
	if c.PgConn().ParameterStatus("server_version") == "" {
		t.Fatal("no ParameterStatus replayed to the client")
	}
	for _, bad := range [][2]string{{"alice", "wrong"}, {"mallory", "alice-secret"}} {
		_, err := pgx.Connect(ctx, p.url(bad[0], bad[1], "shop"))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("%s/%s: want 28P01, got %v", bad[0], bad[1], err)
		}
	}
}

func TestClientTLS(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = pg.CertFile, pg.KeyFile
	})
	ctx := context.Background()
	pem, err := os.ReadFile(pg.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	for _, negotiation := range []string{"postgres", "direct"} {
		t.Run(negotiation, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.url("scramuser", "scram-pass", "postgres", "sslmode", "require", "sslnegotiation", negotiation))
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"postgresql"}}
			cfg.Fallbacks = nil
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil && negotiation == "direct" {
				t.Fatal(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
				t.Fatalf("client connection is %T, not TLS", c.PgConn().Conn())
			}
			var one int
			if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Without a certificate configured the proxy declines TLS and
	// sslmode=prefer falls back to plain text.
	plain := startProxy(t, nil)
	c, err := pgx.Connect(ctx, plain.url("scramuser", "scram-pass", "postgres", "sslmode", "prefer"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	_, err = pgx.Connect(ctx, plain.url("scramuser", "scram-pass", "postgres", "sslmode", "require"))
	if err == nil {
		t.Fatal("sslmode=require succeeded against a proxy without TLS")
	}
}

func TestUpstreamTLS(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.Old = pg.URL("postgres", "", "postgres") + "&sslmode=require"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := connect(t, p.url("scramuser", "scram-pass", "postgres"))
	var ssl bool
	if err := c.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("the proxy's upstream connection is not encrypted under sslmode=require")
	}
	// SCRAM still works over a TLS upstream: the proxy strips
	// SCRAM-SHA-256-PLUS, which would bind the proof to its own TLS session.
	var user string
	if err := c.QueryRow(ctx, "select current_user").Scan(&user); err != nil || user != "scramuser" {
		t.Fatalf("%q %v", user, err)
	}
}
