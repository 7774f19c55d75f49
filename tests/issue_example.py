"""
The example config of issue 2 (the core), verbatim: the unit tests compile
it and the integration tests run it, so both read this one copy.
"""

ISSUE_EXAMPLE = """\
http {
    upstream backend { server 127.0.0.1:3000; keepalive 32; keepalive_requests 1000; keepalive_timeout 60s; }
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 8080;
        server_name example.com www.example.com;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 5s; proxy_send_timeout 30s; proxy_read_timeout 30s;
            proxy_buffering on; proxy_buffer_size 16k; proxy_buffers 16 16k; proxy_busy_buffers_size 32k;
        }
        location /api/ { proxy_pass http://127.0.0.1:8000/; }
        location /events { proxy_pass http://backend; proxy_buffering off; }
        location = /health { return 200 "ok\\n"; }
        add_header X-Frame-Options "SAMEORIGIN" always;
        server_tokens off;
    }
}
"""
"""The config from the issue, verbatim (its backends on fixed local ports)."""
