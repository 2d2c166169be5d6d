package dev.tandem.nacos3;

import com.alibaba.nacos.NacosServerBasicApplication;
import com.alibaba.nacos.NacosServerWebApplication;
import com.alibaba.nacos.core.listener.startup.NacosStartUp;
import com.alibaba.nacos.core.listener.startup.NacosStartUpManager;
import com.alibaba.nacos.sys.env.DeploymentType;
import com.alibaba.nacos.sys.env.EnvUtil;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * Starts a standalone Nacos 3 server for Tandem's tests from the server modules published on
 * Maven Central (see scripts/nacos/install-nacos3.sh).
 *
 * <p>Nacos 3 runs up to three Spring contexts: a core context without a web server, the server
 * web context (open and admin APIs; gRPC belongs to the core) and the console. Like upstream's
 * NacosBootstrap in deployment type "server", this starts the first two: tests need no console.
 */
public final class Main {

    private Main() {
    }

    public static void main(String[] args) {
        EnvUtil.setDeploymentType(DeploymentType.SERVER);

        NacosStartUpManager.start(NacosStartUp.CORE_START_UP_PHASE);
        ConfigurableApplicationContext core = new SpringApplicationBuilder(NacosServerBasicApplication.class)
                .web(WebApplicationType.NONE).run(args);

        NacosStartUpManager.start(NacosStartUp.WEB_START_UP_PHASE);
        new SpringApplicationBuilder(NacosServerWebApplication.class).parent(core).run(args);
    }
}
