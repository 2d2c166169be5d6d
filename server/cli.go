package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Output formats of PrintStatus.
const (
	FormatTable = "table"
	FormatJSON  = "json"
)

// PrintStatus writes statuses for `tandem status`: a table an operator
// reads at a glance, followed by what needs a person (stalled services and
// drift), or with format "json" the ServiceList of the API (without time).
func PrintStatus(w io.Writer, statuses []reconcile.Status, format string) error {
	return PrintServices(w, ServiceList{Services: statuses}, format)
}

// PrintServices is PrintStatus for a whole answer of the API: the table is
// followed by the state of the desired-state source, when the answer has
// one (which revision is in force, a rejected head, failing fetches).
func PrintServices(w io.Writer, list ServiceList, format string) error {
	switch format {
	case "", FormatTable:
		return printTable(w, list)
	case FormatJSON:
		if list.Services == nil {
			list.Services = []reconcile.Status{}
		}
		list.Time = time.Time{}
		b, err := marshalIndent(list)
		if err != nil {
			return fmt.Errorf("encoding status: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("output format %q: want %s or %s", format, FormatTable, FormatJSON)
}

func printTable(w io.Writer, list ServiceList) error {
	statuses := list.Services
	var notes []string
	if list.NotReady != "" {
		notes = append(notes, "NOT READY: "+list.NotReady)
	}
	if list.Source != nil {
		notes = append(notes, sourceLine(list.Source, list.Time))
	}
	if len(statuses) == 0 {
		_, err := fmt.Fprintln(w, strings.Join(append([]string{"No services."}, notes...), "\n"))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tACTIVE\tVERSION-A\tVERSION-B\tWEIGHTS(A/B)\tPHASE\tREADY\tDRIFT\tREVISION")
	for _, s := range statuses {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Service, active(s), version(s, spec.GroupA), version(s, spec.GroupB),
			weights(s), phase(s), ready(s), drift(s), revision(s))
		for _, c := range s.Conditions {
			if c.Type == reconcile.ConditionStalled && c.Status {
				notes = append(notes, fmt.Sprintf("%s: Stalled (%s): %s", s.Service, c.Reason, c.Message))
			}
		}
		for _, r := range s.Preview {
			notes = append(notes, fmt.Sprintf("%s: preview route %s carries group %s", s.Service, r.Binding, r.Group))
		}
		for _, d := range s.Drift {
			notes = append(notes, fmt.Sprintf("%s: drift: %s", s.Service, d))
		}
		if n := analysisNote(s); n != "" {
			notes = append(notes, n)
		}
		if n := approvalNote(s, list.Time); n != "" {
			notes = append(notes, n)
		}
		notes = append(notes, smokeNotes(s)...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		var b strings.Builder
		for _, n := range notes {
			b.WriteString("\n" + strings.ReplaceAll(n, "\n", "\n    "))
		}
		_, err := fmt.Fprintln(w, b.String())
		return err
	}
	return nil
}

// sourceLine tells which revision of the desired state is in force and
// what keeps a newer one out: a rejected head, failing fetches. now is the
// server's time of the answer (zero: ages are not shown).
func sourceLine(src *SourceStatus, now time.Time) string {
	rev := "no revision yet"
	if src.Revision != "" {
		rev = "revision " + shortHash(src.Revision) + " in force"
	}
	parts := []string{"git: " + rev}
	if !src.LastFetch.IsZero() && !now.IsZero() {
		parts = append(parts, "last fetch "+now.Sub(src.LastFetch).Round(time.Second).String()+" ago")
	}
	if src.Head != "" {
		why := src.Rejected
		if why == "" {
			why = "not applied yet"
		}
		parts = append(parts, "head "+shortHash(src.Head)+" NOT applied: "+why)
	}
	if src.FetchError != "" {
		parts = append(parts, fmt.Sprintf("fetching FAILS (%d in a row): %s", src.Failures, src.FetchError))
	}
	return strings.Join(parts, "; ")
}

// active is the desired active group, and the live one when it differs.
func active(s reconcile.Status) string {
	if s.LiveActive == "" || string(s.LiveActive) == string(s.DesiredActive) {
		return string(s.DesiredActive)
	}
	return fmt.Sprintf("%s (live %s)", s.DesiredActive, s.LiveActive)
}

// version is the live version of group g ("?" when unknown or mixed),
// marked "(unhealthy)" when its last probe failed; for the desired active
// group, an arrow shows the desired version when it differs.
func version(s reconcile.Status, g spec.Group) string {
	v := s.Versions[g]
	if v == "" {
		v = "?"
	}
	if p, ok := s.Probed[g]; ok && !p.Healthy {
		v += " (unhealthy)"
	}
	if g == s.DesiredActive && s.Versions[g] != s.DesiredVersion {
		return v + "->" + s.DesiredVersion
	}
	return v
}

// weights lists A/B per binding; one value when every binding agrees.
func weights(s reconcile.Status) string {
	if len(s.Bindings) == 0 {
		return "-"
	}
	var parts []string
	for _, bl := range s.Bindings {
		parts = append(parts, weightLabel(groupWeights(s.Groups, bl, spec.GroupA))+"/"+weightLabel(groupWeights(s.Groups, bl, spec.GroupB)))
	}
	same := true
	for _, p := range parts {
		same = same && p == parts[0]
	}
	if same {
		return parts[0]
	}
	return strings.Join(parts, ",")
}

// weightLabel is the weight every instance has, lo..hi when they differ,
// "?" when an instance is not a backend of the binding.
func weightLabel(ws []int) string {
	if len(ws) == 0 {
		return "-"
	}
	lo, hi := ws[0], ws[0]
	for _, w := range ws {
		if w < 0 {
			return "?"
		}
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

func phase(s reconcile.Status) string {
	switch {
	case s.Transition != nil && s.Transition.Phase == reconcile.PhaseShift && s.Transition.Rollout != nil:
		// A rollout: its step and the target's share, e.g. "release:shift 2/3 50%".
		r := s.Transition.Rollout
		return fmt.Sprintf("%s:%s %d/%d %d%%", s.Transition.Kind, s.Transition.Phase, r.Step+1, len(r.Steps), r.Current().Share)
	case s.Transition != nil:
		return fmt.Sprintf("%s:%s", s.Transition.Kind, s.Transition.Phase)
	case s.Suspended:
		return "suspended"
	}
	return "-"
}

func ready(s reconcile.Status) string {
	for _, c := range s.Conditions {
		if c.Type == reconcile.ConditionReady {
			if c.Status {
				return "True"
			}
			return fmt.Sprintf("False (%s)", c.Reason)
		}
	}
	return "Unknown"
}

func drift(s reconcile.Status) string {
	if len(s.Drift) == 0 {
		return "-"
	}
	return strconv.Itoa(len(s.Drift))
}

func revision(s reconcile.Status) string {
	r := shortHash(s.Revision.Hash)
	if s.AppliedRevision != "" && s.AppliedRevision != s.Revision.Hash {
		r += fmt.Sprintf(" (applied %s)", shortHash(s.AppliedRevision))
	}
	return r
}

func shortHash(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return orDash(h)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// maxAnswer bounds what FetchStatus reads.
const maxAnswer = 64 << 20

// FetchStatus reads GET /api/v1/services from a running daemon, e.g.
// FetchStatus(ctx, "http://127.0.0.1:8080").
func FetchStatus(ctx context.Context, serverURL string) ([]reconcile.Status, error) {
	list, err := FetchServices(ctx, serverURL, "")
	return list.Services, err
}

// FetchServices reads the whole answer of GET /api/v1/services, with the
// state of the desired-state source. A token (the read or the write
// token) is sent as a bearer token when not empty.
func FetchServices(ctx context.Context, serverURL string, token spec.Secret) (ServiceList, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ServiceList{}, fmt.Errorf("server URL %q: want http://host:port or https://host:port", redactURL(serverURL))
	}
	u = u.JoinPath("api/v1/services")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ServiceList{}, fmt.Errorf("fetching status from %s: %w", u.Redacted(), err)
	}
	req.Header.Set("Accept", "application/json")
	if !token.Empty() {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ServiceList{}, fmt.Errorf("fetching status: %w", err) // *url.Error names the URL, password stripped
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxAnswer)
	if resp.StatusCode != http.StatusOK {
		var e ErrorBody
		if json.NewDecoder(body).Decode(&e) != nil || e.Error == "" {
			e.Error = "no error message"
		}
		return ServiceList{}, fmt.Errorf("fetching status from %s: %s: %s", u.Redacted(), resp.Status, e.Error)
	}
	var list ServiceList
	if err := json.NewDecoder(body).Decode(&list); err != nil {
		return ServiceList{}, fmt.Errorf("fetching status from %s: decoding the answer: %w", u.Redacted(), err)
	}
	if list.Services == nil {
		return ServiceList{}, fmt.Errorf("fetching status from %s: the answer has no services list; is this a Tandem server?", u.Redacted())
	}
	return list, nil
}

// redactURL hides the password of a URL that may not even parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if at := strings.LastIndex(raw, "@"); at >= 0 {
			return "<redacted>" + raw[at:]
		}
		return raw
	}
	return u.Redacted()
}
