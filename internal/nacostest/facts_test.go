package nacostest

// These tests pin down what the real servers do with an operator's offline
// (enabled=false) and weight changes, which the emulator in providers/nacos
// must mirror. docs/nacos-servers.md records the results and how to rerun
// them: go test ./internal/nacostest -run Fact -v

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"github.com/stretchr/testify/require"
)

// facts are what each kind of server was found to do.
type facts struct {
	// adminShowsDisabled names the operator read that still shows a
	// disabled instance.
	adminShowsDisabled string
	// omittedKept: a PUT keeps the current value of a field it omits.
	// Otherwise it sets weight to 1 and enabled to true (metadata is kept
	// either way).
	omittedKept bool
	// weightOneIgnored: a PUT with weight=1 leaves the weight as it was.
	weightOneIgnored bool
	// metadataMerged: a PUT's metadata is merged into the instance's;
	// otherwise it replaces it.
	metadataMerged bool
	// reconnectKeepsDisabled and restartKeepsDisabled: an app whose SDK
	// reconnects, or that re-registers the same ip:port from a new client,
	// within 60 s comes back disabled.
	reconnectKeepsDisabled, restartKeepsDisabled bool
	// serverRestartKeepsDisabled: after the server itself restarts, an
	// instance the operator disabled comes back disabled when its app's SDK
	// registers it again (redo on reconnect).
	serverRestartKeepsDisabled bool
	// restartKeepsMetadata: the re-registered instance carries the
	// operator's metadata instead of its own.
	restartKeepsMetadata bool
	// firstMetadataPinned: an app that re-registers the same ip:port with
	// new metadata within 60 s, with no operator update, still shows the
	// metadata it first registered with (r-nacos: naming/service.rs
	// Service::update_instance keeps it in instance_metadata_map until
	// 60 s after the instance left).
	firstMetadataPinned bool
	// updateWithoutMetadataClears: a PUT without metadata, or with "{}",
	// drops the metadata an earlier PUT wrote, so the app's own shows
	// (Nacos: the PUT replaces the whole override). Otherwise the
	// operator's metadata stays.
	updateWithoutMetadataClears bool
}

var serverFacts = map[string]facts{
	KindRNacos: {
		adminShowsDisabled:         "GET /v1/ns/instance",
		omittedKept:                true,
		weightOneIgnored:           true,
		metadataMerged:             false,
		reconnectKeepsDisabled:     false,
		restartKeepsDisabled:       false,
		serverRestartKeepsDisabled: false,
		restartKeepsMetadata:       true,
		firstMetadataPinned:        true,
	},
	KindNacos3: {
		adminShowsDisabled:          "GET /v3/admin/ns/instance/list",
		omittedKept:                 false,
		weightOneIgnored:            false,
		metadataMerged:              true,
		reconnectKeepsDisabled:      true,
		restartKeepsDisabled:        true,
		serverRestartKeepsDisabled:  true,
		restartKeepsMetadata:        true,
		updateWithoutMetadataClears: true,
	},
}

// fleet is a service with two app instances registered over their own SDK
// connections and a subscriber that sees both.
type fleet struct {
	a, b  app
	stopA func() // closes a's SDK client: the app stops
	sub   *watcher
	op    *operator
}

func newFleet(t *testing.T, s *Server) *fleet {
	t.Helper()
	svc := serviceName(t)
	f := &fleet{
		a:  app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.1", port: 8080, weight: 5, metadata: map[string]string{"version": "v1", "zone": "a"}},
		b:  app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.2", port: 8080, weight: 5, metadata: map[string]string{"version": "v1"}},
		op: newOperator(t, s),
	}
	ca := newSDKClient(t, s, nil)
	f.a.register(t, ca)
	f.stopA = ca.CloseClient
	f.b.register(t, newSDKClient(t, s, nil))
	f.sub = subscribe(t, newSDKClient(t, s, nil), svc, f.a.group)
	f.sub.await(t, "both instances", func(in []model.Instance) bool {
		return has(f.a.ip, f.a.port)(in) && has(f.b.ip, f.b.port)(in)
	})
	return f
}

// adminLookup returns instance a as the operator read that shows disabled
// instances returns it, and whether it is there.
func (o *operator) adminLookup(a app) (adminInstance, bool) {
	o.t.Helper()
	if o.s.API == "v3" {
		// Until the service and its cluster exist the list answers 404.
		status, body := o.call(http.MethodGet, "/v3/admin/ns/instance/list", url.Values{"serviceName": {a.service}, "groupName": {a.group}})
		if status != http.StatusOK {
			return adminInstance{}, false
		}
		var out struct{ Data []adminInstance }
		require.NoError(o.t, json.Unmarshal(body, &out), "GET /v3/admin/ns/instance/list: %s", body)
		for _, in := range out.Data {
			if in.IP == a.ip && in.Port == a.port {
				return in, true
			}
		}
		return adminInstance{}, false
	}
	q := url.Values{"serviceName": {a.service}, "groupName": {a.group}, "ip": {a.ip}, "port": {strconv.FormatUint(a.port, 10)}, "clusterName": {"DEFAULT"}}
	status, body := o.call(http.MethodGet, "/v1/ns/instance", q)
	if status != http.StatusOK {
		return adminInstance{}, false
	}
	var in adminInstance
	require.NoError(o.t, json.Unmarshal(body, &in), "GET /v1/ns/instance: %s", body)
	return in, true
}

// awaitAdmin polls the admin view of a until cond holds for the instance
// and whether it is there, and returns the instance.
func (o *operator) awaitAdmin(a app, what string, cond func(in adminInstance, found bool) bool) adminInstance {
	o.t.Helper()
	deadline := time.NewTimer(awaitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		in, ok := o.adminLookup(a)
		if cond(in, ok) {
			return in
		}
		select {
		case <-deadline.C:
			o.t.Fatalf("admin view of %s:%d did not show %s within %s; last: %+v (found: %v)", a.ip, a.port, what, awaitTimeout, in, ok)
		case <-tick.C:
		}
	}
}

// Conditions for awaitAdmin.
func present(_ adminInstance, found bool) bool { return found }
func gone(_ adminInstance, found bool) bool    { return !found }
func disabled(in adminInstance, found bool) bool {
	return found && !in.Enabled
}
func withMeta(key, value string) func(adminInstance, bool) bool {
	return func(in adminInstance, found bool) bool { return found && in.Metadata[key] == value }
}

func TestFactDisabledInstanceIsHiddenFromClientsButNotFromAdmin(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		f := newFleet(t, s)
		sent := time.Now()
		f.op.updateInstance(instanceForm(f.a, false, 5, `{"version":"v1","zone":"a"}`))
		_, at := f.sub.await(t, "the list without the disabled instance", hasNot(f.a.ip, f.a.port))
		t.Logf("%s: push without the disabled instance arrived %s after the PUT was sent", s.Kind, at.Sub(sent))

		fresh := newSDKClient(t, s, nil)
		all, err := fresh.SelectAllInstances(vo.SelectAllInstancesParam{ServiceName: f.a.service, GroupName: f.a.group})
		require.NoError(t, err)
		require.False(t, has(f.a.ip, f.a.port)(all), "SelectAllInstances returned the disabled instance: %+v", all)

		status, body := f.op.call(http.MethodGet, "/v1/ns/instance/list", url.Values{"serviceName": {f.a.service}, "groupName": {f.a.group}})
		require.Equal(t, http.StatusOK, status, "%s", body)
		require.NotContains(t, string(body), `"ip":"`+f.a.ip+`"`, "the v1 client list shows the disabled instance")

		f.op.awaitAdmin(f.a, "enabled=false through "+serverFacts[s.Kind].adminShowsDisabled, disabled)

		f.op.updateInstance(instanceForm(f.a, true, 5, `{"version":"v1","zone":"a"}`))
		f.sub.await(t, "the re-enabled instance", has(f.a.ip, f.a.port))
	})
}

func TestFactZeroWeightInstanceIsStillPushed(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		f := newFleet(t, s)
		f.op.updateInstance(instanceForm(f.a, true, 0, `{"version":"v1","zone":"a"}`))
		got, _ := f.sub.await(t, "weight 0", func(in []model.Instance) bool {
			a, ok := find(in, f.a.ip, f.a.port)
			return ok && a.Weight == 0
		})
		a, _ := find(got, f.a.ip, f.a.port)
		require.True(t, a.Enable)
	})
}

func TestFactUpdateFillsOmittedFields(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)

		form := instanceForm(f.a, false, 0, "")
		form.Del("weight")
		f.op.updateInstance(form)
		in := f.op.awaitAdmin(f.a, "enabled=false", disabled)
		wantWeight := 1.0
		if want.omittedKept {
			wantWeight = f.a.weight
		}
		require.Equal(t, wantWeight, in.Weight, "weight after a PUT without weight")
		require.Equal(t, f.a.metadata, in.Metadata, "metadata after a PUT without metadata")

		form = instanceForm(f.a, true, 3, `{"version":"v2"}`)
		form.Del("enabled")
		f.op.updateInstance(form)
		in = f.op.awaitAdmin(f.a, "metadata version v2", withMeta("version", "v2"))
		require.Equal(t, !want.omittedKept, in.Enabled, "enabled after a PUT without enabled")
		require.Equal(t, 3.0, in.Weight)
		wantMeta := map[string]string{"version": "v2"}
		if want.metadataMerged {
			wantMeta["zone"] = "a"
		}
		require.Equal(t, wantMeta, in.Metadata, "metadata after a PUT with metadata")

		f.op.updateInstance(instanceForm(f.a, true, 1, `{"version":"v3"}`))
		in = f.op.awaitAdmin(f.a, "metadata version v3", withMeta("version", "v3"))
		wantWeight = 1
		if want.weightOneIgnored {
			wantWeight = 3
		}
		require.Equal(t, wantWeight, in.Weight, "weight after a PUT of weight 1 over weight 3")
	})
}

func TestFactAppRestartWithinAMinute(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)
		f.op.updateInstance(instanceForm(f.a, false, 5, `{"version":"v2"}`))
		f.sub.await(t, "the list without the disabled instance", hasNot(f.a.ip, f.a.port))

		f.stopA()
		f.op.awaitAdmin(f.a, "the instance gone", gone)
		f.a.register(t, newSDKClient(t, s, nil))
		in := f.op.awaitAdmin(f.a, "the re-registered instance", present)
		require.Equal(t, !want.restartKeepsDisabled, in.Enabled, "enabled after the app re-registered")
		if want.restartKeepsMetadata {
			require.Equal(t, "v2", in.Metadata["version"], "metadata after the app re-registered")
		} else {
			require.Equal(t, f.a.metadata, in.Metadata, "metadata after the app re-registered")
		}
		if !want.restartKeepsDisabled {
			f.sub.await(t, "the re-registered instance", has(f.a.ip, f.a.port))
		}
	})
}

func TestFactAppRestartWithNewMetadataWithinAMinute(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)
		f.stopA()
		f.op.awaitAdmin(f.a, "the instance gone", gone)
		restarted := f.a
		restarted.metadata = map[string]string{"version": "v2"}
		restarted.register(t, newSDKClient(t, s, nil))
		f.sub.await(t, "the re-registered instance", has(f.a.ip, f.a.port))
		in := f.op.awaitAdmin(f.a, "the re-registered instance", present)
		if want.firstMetadataPinned {
			require.Equal(t, f.a.metadata, in.Metadata, "metadata after the app re-registered with new metadata")
		} else {
			require.Equal(t, restarted.metadata, in.Metadata, "metadata after the app re-registered with new metadata")
		}
	})
}

func TestFactUpdateWithoutMetadataAfterOneWithMetadata(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)
		for i, metadata := range []string{"{}", ""} {
			f.op.updateInstance(instanceForm(f.a, true, 3, `{"version":"pinned"}`))
			f.op.awaitAdmin(f.a, "the operator's metadata", withMeta("version", "pinned"))
			// The weight tells when the second PUT is in force: both come
			// from the same update.
			weight := float64(4 + i)
			f.op.updateInstance(instanceForm(f.a, true, weight, metadata))
			in := f.op.awaitAdmin(f.a, fmt.Sprintf("weight %v", weight), func(in adminInstance, found bool) bool {
				return found && in.Weight == weight
			})
			if want.updateWithoutMetadataClears {
				require.Equal(t, f.a.metadata, in.Metadata, "metadata after a PUT with metadata %q", metadata)
			} else {
				require.Equal(t, map[string]string{"version": "pinned"}, in.Metadata, "metadata after a PUT with metadata %q", metadata)
			}
		}
	})
}

func TestFactAppReconnectWithinAMinute(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)
		// A third instance whose SDK reaches the server's gRPC port through a
		// proxy that can cut its connection.
		c := app{service: f.a.service, group: f.a.group, ip: "127.0.0.3", port: 8080, weight: 5, metadata: map[string]string{"version": "v1"}}
		proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", s.GRPCPort))
		sc := s.SDKServerConfig()
		sc.GrpcPort = uint64(proxy.port())
		c.register(t, newSDKClient(t, s, &sc))
		f.sub.await(t, "the proxied instance", has(c.ip, c.port))
		f.op.updateInstance(instanceForm(c, false, 5, `{"version":"v1"}`))
		f.sub.await(t, "the list without the disabled instance", hasNot(c.ip, c.port))

		// The server drops the instance with the connection. The proxy turns
		// the SDK's reconnects away until that is seen, then lets it in; the
		// SDK registers the instance again (redo) on its new connection.
		proxy.cut()
		f.op.awaitAdmin(c, "the instance gone", gone)
		proxy.resume()
		in := f.op.awaitAdmin(c, "the instance registered again", present)
		require.Equal(t, !want.reconnectKeepsDisabled, in.Enabled, "enabled after the SDK reconnected")
		if !want.reconnectKeepsDisabled {
			f.sub.await(t, "the reconnected instance", has(c.ip, c.port))
		}
	})
}

func TestFactServerRestart(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		want := serverFacts[s.Kind]
		f := newFleet(t, s)
		f.op.updateInstance(instanceForm(f.a, false, 5, ""))
		f.sub.await(t, "the list without the disabled instance", hasNot(f.a.ip, f.a.port))

		require.NoError(t, s.Restart(func() {
			_, err := httpClient.Get(s.BaseURL() + "/v1/ns/instance/list?serviceName=" + f.a.service)
			require.Error(t, err, "the server answers while it is down")
		}))
		// The apps' SDK clients reconnect and register again (redo).
		in := f.op.awaitAdmin(f.a, "the disabled instance registered again", present)
		f.op.awaitAdmin(f.b, "the other instance registered again", present)
		require.Equal(t, !want.serverRestartKeepsDisabled, in.Enabled, "enabled after the server restarted")
		// The subscriber's subscription is redone too: the next change is
		// pushed to it.
		f.op.updateInstance(instanceForm(f.a, true, 5, ""))
		f.sub.await(t, "both instances after the server restarted", func(in []model.Instance) bool {
			return has(f.a.ip, f.a.port)(in) && has(f.b.ip, f.b.port)(in)
		})
	})
}

func TestFactInstanceWritesOfOtherAPIVersionsAreRefused(t *testing.T) {
	refused := map[string]map[string]int{
		KindRNacos: {"/v2/ns/instance": http.StatusNotFound, "/v3/admin/ns/instance": http.StatusNotFound},
		KindNacos3: {"/v1/ns/instance": http.StatusGone, "/v2/ns/instance": http.StatusGone},
	}
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		op := newOperator(t, s)
		form := instanceForm(app{service: serviceName(t), group: "DEFAULT_GROUP", ip: "127.0.0.1", port: 80}, false, 1, "")
		for path, want := range refused[s.Kind] {
			status, body := op.call(http.MethodPut, path, form)
			require.Equal(t, want, status, "PUT %s: %s", path, body)
			if want == http.StatusGone {
				require.Contains(t, string(body), "/v3/admin/ns/instance", "PUT %s names its replacement", path)
			}
		}
	})
}

// slowFactsEnv runs the facts that take more than a minute.
const slowFactsEnv = "TANDEM_NACOS_SLOW_FACTS"

func TestFactAppRestartAfterAMinuteComesBackEnabled(t *testing.T) {
	if os.Getenv(slowFactsEnv) != "1" {
		t.Skipf("takes over a minute; set %s=1", slowFactsEnv)
	}
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		f := newFleet(t, s)
		f.op.updateInstance(instanceForm(f.a, false, 5, `{"version":"v2"}`))
		f.sub.await(t, "the list without the disabled instance", hasNot(f.a.ip, f.a.port))
		f.stopA()
		// Both servers keep an override for 60 s after its owner disconnects
		// and sweep expired ones every few seconds.
		time.Sleep(75 * time.Second)
		f.a.register(t, newSDKClient(t, s, nil))
		f.sub.await(t, "the re-registered instance", has(f.a.ip, f.a.port))
		in := f.op.awaitAdmin(f.a, "the re-registered instance", present)
		require.True(t, in.Enabled)
		require.Equal(t, f.a.metadata, in.Metadata, "the operator's metadata outlived the override")
	})
}

// What each server answers about a service or instance it does not know:
// providers/nacos takes only these answers for "no instances" and fails
// the read on any other 404 or 5xx.
func TestFactUnknownServiceAndInstanceAnswers(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		op := newOperator(t, s)
		svc := serviceName(t)
		if s.API == "v3" {
			status, body := op.call(http.MethodGet, "/v3/admin/ns/instance/list",
				url.Values{"serviceName": {svc}, "groupName": {"DEFAULT_GROUP"}, "clusterName": {"DEFAULT"}})
			t.Logf("v3 list of an unknown service: %d %s", status, body)
			require.Equal(t, http.StatusNotFound, status)
			require.Contains(t, string(body), "is not found!")
			return
		}
		status, body := op.call(http.MethodGet, "/v1/ns/catalog/instances", url.Values{"serviceName": {"DEFAULT_GROUP@@" + svc},
			"groupName": {"DEFAULT_GROUP"}, "clusterName": {"DEFAULT"}, "pageNo": {"1"}, "pageSize": {"10"}})
		t.Logf("v1 catalog list of an unknown service: %d %s", status, body)
		if s.Kind == KindRNacos {
			require.Equal(t, http.StatusOK, status)
			require.JSONEq(t, `{"count":0,"list":[]}`, string(body))
		}
		status, body = op.call(http.MethodGet, "/v1/ns/instance", url.Values{"serviceName": {"DEFAULT_GROUP@@" + svc},
			"groupName": {"DEFAULT_GROUP"}, "clusterName": {"DEFAULT"}, "ip": {"127.0.0.9"}, "port": {"80"}})
		t.Logf("v1 lookup of an unknown instance: %d %s", status, body)
		if s.Kind == KindRNacos {
			require.Equal(t, http.StatusInternalServerError, status)
			require.Equal(t, "error", strings.TrimSpace(string(body)))
		}
	})
}
