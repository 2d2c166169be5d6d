package dev.tandem.javaapps.consumer;

import java.util.List;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.loadbalancer.LoadBalanced;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.http.HttpHeaders;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.client.RestClient;
import org.springframework.web.client.RestClientException;

/**
 * A Spring Cloud consumer of the provider: POST /echo calls POST http://{app.target}/echo through
 * Spring Cloud LoadBalancer (round robin over the instances Nacos discovery lists, kept in the
 * LoadBalancer's cache for spring.cloud.loadbalancer.cache.ttl, 35 s unless set) and answers the
 * provider's body and its X-Backend, X-Version and X-Group headers. A call that fails answers 502
 * with the reason, so that the test's load generator counts it.
 */
@SpringBootApplication
@RestController
public class ConsumerApplication {

  public static void main(String[] args) {
    SpringApplication.run(ConsumerApplication.class, args);
  }

  /** The load-balanced builder, in a class of its own so that the controller can take it. */
  @Configuration(proxyBeanMethods = false)
  static class LoadBalancing {
    @Bean
    @LoadBalanced
    RestClient.Builder loadBalanced() {
      return RestClient.builder();
    }
  }

  private final RestClient client;

  ConsumerApplication(RestClient.Builder loadBalanced, @Value("${app.target}") String target) {
    this.client = loadBalanced.baseUrl("http://" + target).build();
  }

  @PostMapping("/echo")
  ResponseEntity<String> echo(@RequestBody(required = false) String body) {
    try {
      ResponseEntity<String> r = client.post().uri("/echo").body(body == null ? "" : body).retrieve().toEntity(String.class);
      HttpHeaders h = new HttpHeaders();
      for (String name : List.of("X-Backend", "X-Version", "X-Group")) {
        String v = r.getHeaders().getFirst(name);
        if (v != null) {
          h.set(name, v);
        }
      }
      return ResponseEntity.status(r.getStatusCode()).headers(h).body(r.getBody());
    } catch (RestClientException e) {
      return ResponseEntity.status(502).body("calling " + e.getClass().getSimpleName() + ": " + e.getMessage() + "\n");
    }
  }
}
