package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// cost is what the daemon spent, from the counters of its /metrics.
type cost struct {
	Passes           int // tandem_reconcile_total of the measured service
	ProviderRequests int // tandem_provider_requests_total: LB and registry API calls
}

func (c cost) minus(d cost) cost {
	return cost{c.Passes - d.Passes, c.ProviderRequests - d.ProviderRequests}
}
func (c cost) plus(d cost) cost {
	return cost{c.Passes + d.Passes, c.ProviderRequests + d.ProviderRequests}
}

// scrapeCost reads the daemon's counters at addr (its HTTP API).
func scrapeCost(ctx context.Context, addr string) (cost, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return cost{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cost{}, fmt.Errorf("reading the daemon's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cost{}, fmt.Errorf("reading the daemon's metrics: %s", resp.Status)
	}
	var c cost
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || name != "tandem_reconcile_total" || !strings.Contains(labels, `service="`+service+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return cost{}, fmt.Errorf("reading the daemon's metrics: %q: %w", line, err)
		}
		c.Passes += int(v)
	}
	return c, sc.Err()
}
