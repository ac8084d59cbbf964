"""The message catalogs of the hub's own pages, en/ru/zh.

STOCK holds JupyterHub's own English, exactly as its templates (and handlers) write it, with the
Russian and Chinese: lunarhub.platform.hub.i18n rewrites those texts of the installed templates into
lookups here, so we translate JupyterHub's pages without copying their markup. A text JupyterHub
changes in an upgrade stays English and tests/unit/test_hub_pages.py names it.

OURS holds the texts of our own template blocks (hub/templates/), by key. The language switcher's
names are lunarhub.config.languages.ENDONYMS (the services' pages show the same)."""

from __future__ import annotations

# English as JupyterHub 6.1 writes it (whitespace runs count as one space) -> (ru, zh).
STOCK: dict[str, tuple[str, str]] = {
    # page.html: every page's frame
    "Home": ("Главная", "首页"),
    "Token": ("Токены", "令牌"),
    "Admin": ("Администрирование", "管理"),
    "Services": ("Сервисы", "服务"),
    "Logout": ("Выйти", "退出"),
    "Login": ("Войти", "登录"),
    "Toggle dark mode": ("Тёмная тема", "切换深色模式"),
    "Toggle navigation": ("Меню", "切换导航"),
    "JupyterHub logo": ("Логотип", "徽标"),
    "JupyterHub requires JavaScript.": ("Для работы нужен JavaScript.", "需要启用 JavaScript。"),
    "Please enable it to proceed.": ("Включите его, чтобы продолжить.", "请启用后继续。"),
    "The error": ("Ошибка", "错误"),
    "Close": ("Закрыть", "关闭"),
    # the hidden error dialog: `modal('Error', btn_label='OK')`, its title and button
    "Error": ("Ошибка", "错误"),
    "OK": ("ОК", "确定"),
    # login.html
    "Sign in": ("Вход", "登录"),
    "Username:": ("Имя пользователя:", "用户名："),
    "Password:": ("Пароль:", "密码："),
    "Show password": ("Показать пароль", "显示密码"),
    "Hide password": ("Скрыть пароль", "隐藏密码"),
    "Warning: JupyterHub seems to be served over an unsecured HTTP connection. We strongly recommend "
    "enabling HTTPS for JupyterHub.": (
        "Внимание: страница открыта по незащищённому соединению HTTP. Настоятельно рекомендуем HTTPS.",
        "警告：此页面通过不安全的 HTTP 连接提供。强烈建议启用 HTTPS。"),
    "Invalid username or password": ("Неверное имя пользователя или пароль", "用户名或密码错误"),
    # logout.html
    "Successfully logged out.": ("Вы вышли из системы.", "您已成功退出。"),
    # home.html
    "JupyterHub home page": ("Главная страница", "主页"),
    "Stop My Server": ("Остановить мой сервер", "停止我的服务器"),
    "Start": ("Запустить", "启动"),
    "My Server": ("Мой сервер", "我的服务器"),
    "Named Servers": ("Именованные серверы", "命名服务器"),
    "In addition to your default server, you may have additional": (
        "Кроме основного сервера, у вас может быть ещё", "除默认服务器外，您还可以另有"),
    "server(s) with names. This allows you to have more than one server running at the same time.": (
        "именованных серверов: так можно держать запущенными несколько серверов одновременно.",
        "个命名服务器，从而同时运行多个服务器。"),
    "Server name": ("Имя сервера", "服务器名称"),
    "URL": ("Адрес", "网址"),
    "Last activity": ("Последняя активность", "最近活动"),
    "Actions": ("Действия", "操作"),
    "server name": ("имя сервера", "服务器名称"),
    "name-your-server": ("имя-сервера", "服务器名称"),
    "Add New Server": ("Добавить сервер", "添加服务器"),
    "Never": ("Никогда", "从未"),
    "stop": ("остановить", "停止"),
    "start": ("запустить", "启动"),
    "delete": ("удалить", "删除"),
    # spawn_pending.html, stop_pending.html, not_running.html
    "Your server is starting up.": ("Ваш сервер запускается.", "您的服务器正在启动。"),
    "You will be redirected automatically when it's ready for you.": (
        "Когда он будет готов, страница откроется сама.", "服务器就绪后将自动跳转。"),
    "Complete": ("выполнено", "完成"),
    "Event log": ("Журнал событий", "事件日志"),
    "Stop Server": ("Остановить сервер", "停止服务器"),
    "Stopping...": ("Остановка…", "正在停止…"),
    "Stopping server...": ("Сервер останавливается…", "正在停止服务器…"),
    "Server stopped successfully!": ("Сервер остановлен.", "服务器已停止。"),
    "Error stopping server": ("Не удалось остановить сервер", "停止服务器失败"),
    "Your server is stopping.": ("Ваш сервер останавливается.", "您的服务器正在停止。"),
    "You will be able to start it again once it has finished stopping.": (
        "Его можно будет запустить снова, когда он остановится.", "停止完成后即可再次启动。"),
    "refresh": ("обновить", "刷新"),
    "Spawn failed": ("Запуск не удался", "启动失败"),
    "Server not running": ("Сервер не запущен", "服务器未运行"),
    "The latest attempt to start your server": ("Последняя попытка запустить ваш сервер", "最近一次启动您的服务器"),
    "has failed.": ("не удалась.", "失败。"),
    "Would you like to retry starting it?": ("Попробовать запустить снова?", "要重新启动吗？"),
    "Your server": ("Ваш сервер", "您的服务器"),
    "is not running.": ("не запущен.", "未在运行。"),
    "It will be restarted automatically. If you are not redirected in a few seconds, click below to "
    "launch your server.": (
        "Он будет запущен автоматически. Если через несколько секунд ничего не произошло, нажмите кнопку ниже.",
        "它将自动重新启动。如果几秒内没有跳转，请点击下方按钮启动服务器。"),
    "Would you like to start it?": ("Запустить его?", "要启动吗？"),
    "Relaunch": ("Перезапустить", "重新启动"),
    "Launch": ("Запустить", "启动"),
    "Server": ("сервер", "服务器"),
    # error.html, 404.html and the handlers' status texts
    "Jupyter has lots of moons, but this is not one...": (
        "У Юпитера много лун, но эта страница не из них…", "木星有很多卫星，但这里不是其中之一……"),
    "Forbidden": ("Доступ запрещён", "禁止访问"),
    "Not Found": ("Не найдено", "未找到"),
    "Internal Server Error": ("Внутренняя ошибка сервера", "服务器内部错误"),
    "Service Unavailable": ("Сервис недоступен", "服务不可用"),
    "Bad Request": ("Неверный запрос", "请求错误"),
    "Unauthorized": ("Требуется вход", "未授权"),
    # token.html
    "Manage JupyterHub Tokens": ("Управление токенами", "管理令牌"),
    "Note": ("Заметка", "备注"),
    "note to identify your new token": ("заметка, чтобы узнать новый токен", "用于识别新令牌的备注"),
    "This note will help you keep track of what your tokens are for.": (
        "Заметка напомнит, для чего нужен каждый токен.", "备注可帮助您记住每个令牌的用途。"),
    "Token expires in": ("Срок действия токена", "令牌有效期"),
    "You can configure when your token will expire.": (
        "Можно выбрать, когда токен перестанет действовать.", "您可以设置令牌的过期时间。"),
    "Permissions": ("Права", "权限"),
    "list of scopes for the token to have, separated by space": (
        "права (scopes) токена через пробел", "令牌的权限范围（scopes），以空格分隔"),
    "You can limit the permissions of the token so it can only do what you want it to. If none are "
    "specified, the token will have permission to do everything you can do. See the": (
        "Права токена можно ограничить только нужными. Если ничего не указано, токен может всё, что можете вы. "
        "См.", "您可以限制令牌的权限，只允许它做您希望的事。如未指定，令牌将拥有您的全部权限。参见"),
    "JupyterHub documentation for a list of available scopes": (
        "список прав в документации JupyterHub", "JupyterHub 文档中的可用权限列表"),
    "Request new API token": ("Получить новый токен API", "申请新的 API 令牌"),
    "Your new API Token": ("Ваш новый токен API", "您的新 API 令牌"),
    "Copy this token. You won't be able to see it again, but you can always come back here to get a new one.": (
        "Скопируйте токен: больше он показан не будет, но здесь всегда можно получить новый.",
        "请复制此令牌。它不会再次显示，但您随时可以回到这里申请新的令牌。"),
    "API Tokens": ("Токены API", "API 令牌"),
    "These are tokens with access to the JupyterHub API. Permissions for each token may be viewed via the "
    "JupyterHub tokens API. Revoking the API token for a running server will require restarting that server.": (
        "Это токены с доступом к API хаба. Права каждого видны через API токенов. Если отозвать токен "
        "работающего сервера, сервер придётся перезапустить.",
        "这些令牌可访问 JupyterHub API。每个令牌的权限可通过令牌 API 查看。撤销运行中服务器的令牌后需要重启该服务器。"),
    "Last used": ("Последнее использование", "最近使用"),
    "Created": ("Создан", "创建时间"),
    "Expires": ("Истекает", "过期时间"),
    "scopes": ("права", "权限"),
    "N/A": ("—", "—"),
    "revoke": ("отозвать", "撤销"),
    "Authorized Applications": ("Разрешённые приложения", "已授权的应用"),
    "These are applications that use OAuth with JupyterHub to identify users (mostly notebook servers). "
    "OAuth tokens can generally only be used to identify you, not take actions on your behalf.": (
        "Это приложения, которые узнают пользователей через OAuth хаба (в основном серверы блокнотов). "
        "Токены OAuth обычно только подтверждают, кто вы, и не действуют от вашего имени.",
        "这些应用通过 JupyterHub 的 OAuth 识别用户（主要是笔记本服务器）。OAuth 令牌通常只能用于识别您的身份，"
        "不能代表您执行操作。"),
    "Application": ("Приложение", "应用"),
    "First authorized": ("Впервые разрешено", "首次授权"),
    # The expiry choices of the token page (JupyterHub's TokenPageHandler).
    "1 Hour": ("1 час", "1 小时"),
    "1 Day": ("1 день", "1 天"),
    "1 Week": ("1 неделя", "1 周"),
    "1 Month": ("1 месяц", "1 个月"),
    "1 Year": ("1 год", "1 年"),
}

# Our own blocks (hub/templates/), by key: {en, ru, zh}.
OURS: dict[str, dict[str, str]] = {
    "language": {"en": "Language", "ru": "Язык", "zh": "语言"},
    "institutes": {"en": "Member institutes", "ru": "Институты-участники", "zh": "成员机构"},
    "no_lab": {"en": "Your account opens published dashboards; it has no notebook server of its own.",
               "ru": "Ваша учётная запись открывает опубликованные дашборды; собственного сервера блокнотов у неё нет.",
               "zh": "您的账户可以打开已发布的仪表板，但没有自己的笔记本服务器。"},
    "dashboards": {"en": "Dashboards", "ru": "Дашборды", "zh": "仪表板"},
    "projects": {"en": "Joint projects", "ru": "Совместные проекты", "zh": "联合项目"},
    "project": {"en": "Project", "ru": "Проект", "zh": "项目"},
    "login_intro": {"en": "Sign in with the account your institute gave you.",
                    "ru": "Войдите с учётной записью, выданной вашим институтом.",
                    "zh": "请使用所在机构分配给您的账户登录。"},
}
