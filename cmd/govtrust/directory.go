package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/store"
)

// caSource gives the directory publisher the CA's outbox (ca/outbox.go):
// the directory declares what it needs (directory.Source) and this wires
// the CA in, so neither service imports the other (ARCHITECTURE.md §1).
type caSource struct{}

var _ directory.Source = caSource{}

func (caSource) Pending(ctx context.Context, q store.Querier, limit int) ([]directory.Event, error) {
	evs, err := ca.PendingOutbox(ctx, q, limit)
	if err != nil {
		return nil, err
	}
	out := make([]directory.Event, len(evs))
	for i, e := range evs {
		out[i] = directory.Event{ID: e.ID, Kind: e.Event, Issuer: e.IssuerID, Serial: e.Serial}
	}
	return out, nil
}

func (caSource) MarkPublished(ctx context.Context, tx *store.Tx, ids []int64, at time.Time) error {
	_, err := ca.MarkOutboxPublished(ctx, tx, ids, at)
	return err
}

func (caSource) Certificate(ctx context.Context, q store.Querier, issuer, serial string) (*directory.Certificate, error) {
	c, err := ca.CertificateRecord(ctx, q, issuer, serial)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &directory.Certificate{DER: c.DER, Revoked: c.Status == "revoked", RequesterOrg: c.RequesterOrg}, nil
}

func (caSource) Authority(ctx context.Context, q store.Querier, id string) (*directory.Authority, error) {
	a, err := ca.AuthorityRecordOf(ctx, q, id)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &directory.Authority{ID: a.ID, Cert: a.Cert, CRL: a.CRL, DeltaCRL: a.DeltaCRL, Cross: a.Cross}, nil
}

func newDirectoryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "directory", Short: "The LDAP directory: import the organisation"}
	o := &caOpts{online: true}
	var format string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Load departments, people, applications and services from YAML or CSV (UTF-8) into the directory",
		Long: `Load departments, people, applications and services into the directory through the API
(POST /api/v1/directory/import, action directory.import: the system administrator).

YAML: lists departments (code, name, parent, telephone, address, description), people (uid,
name, surname, department, title, mail, telephone, mobile, id_number), applications (name,
department, mail, description) and services (name, department, url, description).
CSV: a header row with a "kind" column (department, person, application, service) and the
same field names as columns. Entries that exist are replaced; their certificates are kept.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if format == "" {
				format = "yaml"
				if strings.EqualFold(filepath.Ext(args[0]), ".csv") {
					format = "csv"
				}
			}
			// Parse locally first: errors name the line before anything is sent.
			if _, err := directory.ParseImport(data, format); err != nil {
				return err
			}
			ct := "application/yaml"
			if format == "csv" {
				ct = "text/csv; charset=utf-8"
			}
			res, err := o.postRaw(cmd.Context(), "/api/v1/directory/import", ct, data)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", bytes.TrimSpace(res))
			return nil
		},
	}
	o.register(imp)
	imp.Flags().StringVar(&format, "format", "", "yaml or csv (default from the file name)")
	cmd.AddCommand(imp)
	return cmd
}

// postRaw posts body as contentType to the API and returns the answer.
func (o *caOpts) postRaw(ctx context.Context, path, contentType string, body []byte) ([]byte, error) {
	client, base, err := o.client(o.url, true)
	if err != nil {
		return nil, err
	}
	tok, err := o.bearer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, problemError(http.MethodPost, path, resp, raw)
	}
	return raw, nil
}
