package daemon

import (
	"fmt"
	"log/slog"
	"net/url"

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

// externalHost is the host name of api.externalURL, which the API must
// serve (the links point there), or "".
func externalHost(cfg *spec.Config) string {
	u, err := url.Parse(cfg.API.ExternalURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
