package wiki;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpFilter;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;

/** Stamps every response with the release and node, so a test through the load balancer sees who answered. */
public final class HeadersFilter extends HttpFilter {
    @Override
    protected void doFilter(HttpServletRequest req, HttpServletResponse resp, FilterChain chain)
            throws IOException, ServletException {
        WikiApp app = (WikiApp) getServletContext().getAttribute(WikiApp.ATTR);
        resp.setHeader("X-Wiki-Version", Release.VERSION);
        resp.setHeader("X-Wiki-Node", app == null ? "unknown" : app.nodeName());
        chain.doFilter(req, resp);
    }
}
