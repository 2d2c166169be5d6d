package daemon

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/spec"
)

// approvalLinks is the signer of the promote/abort links in the chat
// messages that announce an approval pause, or nil when api.linkKeyEnv is
// not set (the messages then say that no links are sent).
func approvalLinks(cfg *spec.Config, log *slog.Logger) (*approvallink.Signer, error) {
	if cfg.API.LinkKeyEnv == "" {
		log.Info("api.linkKeyEnv is not set: approval pauses are announced without promote/abort links")
		return nil, nil
	}
	key, err := spec.SecretFromEnv("api.linkKeyEnv", cfg.API.LinkKeyEnv)
	if err != nil {
		return nil, err
	}
	s, err := approvallink.New(cfg.API.ExternalURL, []byte(key.Reveal()), cfg.API.LinkTTL.D())
	if err != nil {
		return nil, fmt.Errorf("approval links: %w", err)
	}
	return s, nil
}

// externalHosts are api.allowedHosts plus the host of api.externalURL,
// which the API must serve: the approval links point there.
func externalHosts(cfg *spec.Config) []string {
	hosts := slices.Clone(cfg.API.AllowedHosts)
	if u, err := url.Parse(cfg.API.ExternalURL); err == nil && u.Hostname() != "" && !slices.Contains(hosts, u.Hostname()) {
		hosts = append(hosts, u.Hostname())
	}
	return hosts
}
