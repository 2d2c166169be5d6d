package dev.tandem.javaapps.provider;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.info.BuildProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.filter.OncePerRequestFilter;
import org.springframework.web.socket.CloseStatus;
import org.springframework.web.socket.TextMessage;
import org.springframework.web.socket.WebSocketSession;
import org.springframework.web.socket.config.annotation.EnableWebSocket;
import org.springframework.web.socket.config.annotation.WebSocketConfigurer;
import org.springframework.web.socket.config.annotation.WebSocketHandlerRegistry;
import org.springframework.web.socket.handler.TextWebSocketHandler;

/**
 * The service Tandem releases in the Java end-to-end test: a plain Spring Boot 3.5 web app with
 *
 * <pre>
 *   POST /echo           answers its body
 *   POST /slow?ms=N      answers its body after N milliseconds (a request in flight during a drain)
 *   GET  /ws             WebSocket echo of every text message
 *   POST /drain          closes every open WebSocket with 1001 Going Away (Tandem's drain.signal)
 *   GET  /actuator/health, /actuator/info (build.version), /actuator/prometheus (Micrometer)
 * </pre>
 *
 * Every answer carries X-Backend (app.name), X-Version (app.version) and X-Group (app.group). It
 * registers in Nacos through Spring Cloud Alibaba with metadata version and group (see
 * application.properties) and shuts down gracefully.
 */
@SpringBootApplication
@RestController
@EnableWebSocket
public class ProviderApplication implements WebSocketConfigurer {

  public static void main(String[] args) {
    SpringApplication.run(ProviderApplication.class, args);
  }

  @Value("${app.name}")
  String name;

  @Value("${app.version}")
  String version;

  @Value("${app.group}")
  String group;

  private final Set<WebSocketSession> sessions = ConcurrentHashMap.newKeySet();

  /**
   * The running version as /actuator/info's build.version, as the build-info goal of
   * spring-boot-maven-plugin would write it: here it comes from app.version so that one jar runs
   * as every version of the test.
   */
  @Bean
  BuildProperties buildProperties(@Value("${app.version}") String version) {
    Properties p = new Properties();
    p.setProperty("group", "dev.tandem.javaapps");
    p.setProperty("artifact", "provider");
    p.setProperty("name", "provider");
    p.setProperty("version", version);
    return new BuildProperties(p);
  }

  @Bean
  OncePerRequestFilter identityHeaders() {
    return new OncePerRequestFilter() {
      @Override
      protected void doFilterInternal(HttpServletRequest req, HttpServletResponse resp, FilterChain chain)
          throws ServletException, IOException {
        resp.setHeader("X-Backend", name);
        resp.setHeader("X-Version", version);
        resp.setHeader("X-Group", group);
        chain.doFilter(req, resp);
      }
    };
  }

  @PostMapping("/echo")
  String echo(@RequestBody(required = false) String body) {
    return body == null ? "" : body;
  }

  @PostMapping("/slow")
  String slow(@RequestParam long ms, @RequestBody(required = false) String body) throws InterruptedException {
    Thread.sleep(ms);
    return body == null ? "" : body;
  }

  @PostMapping("/drain")
  String drain() {
    int n = 0;
    for (WebSocketSession s : sessions) {
      try {
        s.close(CloseStatus.GOING_AWAY);
        n++;
      } catch (IOException e) {
        // already gone
      }
    }
    return "closed " + n + "\n";
  }

  @Override
  public void registerWebSocketHandlers(WebSocketHandlerRegistry registry) {
    registry.addHandler(new TextWebSocketHandler() {
      @Override
      public void afterConnectionEstablished(WebSocketSession session) {
        sessions.add(session);
      }

      @Override
      protected void handleTextMessage(WebSocketSession session, TextMessage message) throws IOException {
        synchronized (session) {
          session.sendMessage(message);
        }
      }

      @Override
      public void afterConnectionClosed(WebSocketSession session, CloseStatus status) {
        sessions.remove(session);
      }
    }, "/ws").setAllowedOrigins("*");
  }
}
