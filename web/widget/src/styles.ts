// Static styles of the shadow root; nothing from the page leaks in, nothing leaks out.
export const STYLES = `
:host{all:initial}
[hidden]{display:none!important}
*{box-sizing:border-box}
.sb{--sb-accent:#2563eb;--sb-fg:#111827;--sb-muted:#6b7280;--sb-bg:#fff;--sb-soft:#f3f4f6;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--sb-fg)}
button{font:inherit;cursor:pointer}
.bubble{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;border:0;border-radius:50%;
background:var(--sb-accent);color:#fff;display:flex;align-items:center;justify-content:center;
box-shadow:0 6px 20px rgba(0,0,0,.25);transition:transform .15s}
.bubble:hover{transform:scale(1.06)}
.bubble:focus-visible,.close:focus-visible,.send:focus-visible{outline:3px solid #93c5fd;outline-offset:2px}
.bubble[data-unread]::after{content:"";position:absolute;top:4px;right:4px;width:12px;height:12px;border-radius:50%;
background:#ef4444;border:2px solid #fff}
.panel{position:fixed;right:20px;bottom:88px;z-index:2147483000;width:370px;height:min(580px,calc(100vh - 110px));
display:flex;flex-direction:column;background:var(--sb-bg);border-radius:14px;overflow:hidden;
box-shadow:0 12px 40px rgba(0,0,0,.25)}
.header{display:flex;align-items:center;gap:8px;padding:14px 16px;background:var(--sb-accent);color:#fff}
.title{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.close{width:32px;height:32px;border:0;border-radius:8px;background:transparent;color:#fff;display:flex;
align-items:center;justify-content:center}
.close:hover{background:rgba(255,255,255,.15)}
.status,.error{padding:6px 16px;font-size:12px}
.status{background:#fef3c7;color:#92400e}
.error{background:#fee2e2;color:#991b1b}
.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#fafafa}
.msg{max-width:80%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}
.msg[data-role=user]{align-self:flex-end;background:var(--sb-accent);color:#fff;border-bottom-right-radius:4px}
.msg[data-role=bot],.msg[data-role=operator]{align-self:flex-start;background:var(--sb-soft);border-bottom-left-radius:4px}
.msg[data-role=operator]{border:1px solid #d1d5db}
.msg[data-pending]{opacity:.65}
.msg[data-pending]::after{content:"Sending\\2026";display:block;font-size:11px;opacity:.9}
.msg[data-failed]{background:#fee2e2;color:#991b1b}
.msg[data-failed]::after{content:"Not sent";display:block;font-size:11px}
.msg[data-streaming]:empty::before{content:"\\2026"}
.typing{padding:4px 16px;font-size:12px;color:var(--sb-muted);font-style:italic}
.form{display:flex;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid #e5e7eb}
.input{flex:1;resize:none;min-height:38px;max-height:120px;padding:8px 10px;border:1px solid #d1d5db;border-radius:10px;
font:inherit;color:inherit;background:#fff}
.input:focus{outline:2px solid var(--sb-accent);outline-offset:-1px;border-color:transparent}
.send{height:38px;padding:0 14px;border:0;border-radius:10px;background:var(--sb-accent);color:#fff;font-weight:600}
.send:disabled{opacity:.5;cursor:default}
@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100%;border-radius:0}}
@media (prefers-reduced-motion:reduce){.bubble{transition:none}}
`;
