"""Gallery texts in English, Russian and Chinese; the language is chosen as on the hub's own pages
(lunarhub.config.languages: ?lang=, the shared cookie, or Accept-Language)."""

from __future__ import annotations

from lunarhub.config.languages import COOKIE, pick, translator

__all__ = ["COOKIE", "TEXTS", "pick", "t"]

TEXTS: dict[str, dict[str, str]] = {
    "gallery": {"en": "Dashboards", "ru": "Дашборды", "zh": "仪表板"},
    "empty": {"en": "No dashboards are shared with you yet.", "ru": "С вами пока не поделились дашбордами.",
              "zh": "目前没有与您共享的仪表板。"},
    "author": {"en": "Author", "ru": "Автор", "zh": "作者"},
    "project": {"en": "Project", "ru": "Проект", "zh": "项目"},
    "institute": {"en": "Institute", "ru": "Институт", "zh": "机构"},
    "version": {"en": "Version", "ru": "Версия", "zh": "版本"},
    "date": {"en": "Published", "ru": "Опубликовано", "zh": "发布时间"},
    "open": {"en": "Open", "ru": "Открыть", "zh": "打开"},
    "details": {"en": "Details and comments", "ru": "Подробности и комментарии", "zh": "详情与评论"},
    "older": {"en": "Other versions", "ru": "Другие версии", "zh": "其他版本"},
    "comments": {"en": "Comments on this version", "ru": "Комментарии к этой версии", "zh": "对此版本的评论"},
    "no_comments": {"en": "No comments yet.", "ru": "Комментариев пока нет.", "zh": "暂无评论。"},
    "add_comment": {"en": "Add comment", "ru": "Добавить комментарий", "zh": "添加评论"},
    "starting": {"en": "Starting the dashboard…", "ru": "Запуск дашборда…", "zh": "正在启动仪表板…"},
    "starting_note": {"en": "It was idle and stopped; this page reloads by itself.",
                      "ru": "Он простаивал и был остановлен; страница обновится сама.",
                      "zh": "它因闲置而停止；本页面将自动刷新。"},
    "failed": {"en": "The dashboard failed to start.", "ru": "Дашборд не запустился.", "zh": "仪表板启动失败。"},
    "failed_viewer": {"en": "Its author can see the details here.", "ru": "Подробности видны автору на этой странице.",
                      "zh": "作者可在此页面查看详细信息。"},
    "retry": {"en": "Try again", "ru": "Повторить", "zh": "重试"},
    "log_tail": {"en": "Last lines of the server log (only you, the author, see this)",
                 "ru": "Последние строки журнала сервера (видны только вам, автору)",
                 "zh": "服务器日志的最后几行（仅作者本人可见）"},
    "not_found": {"en": "No such dashboard, or it is not shared with you.",
                  "ru": "Такого дашборда нет, или он вам не доступен.", "zh": "仪表板不存在或未与您共享。"},
    "hash": {"en": "Content hash", "ru": "Хеш содержимого", "zh": "内容哈希"},
    "environment": {"en": "Environment", "ru": "Окружение", "zh": "运行环境"},
    "back": {"en": "All dashboards", "ru": "Все дашборды", "zh": "全部仪表板"},
    "shared_with": {"en": "Shared with", "ru": "Доступ", "zh": "共享对象"},
    "latest": {"en": "latest", "ru": "последняя", "zh": "最新"},
    "thumb_alt": {"en": "Preview of the dashboard", "ru": "Превью дашборда", "zh": "仪表板预览"},
    "data_used": {"en": "Data used", "ru": "Использованные данные", "zh": "使用的数据"},
    "no_data_used": {"en": "This version read no data from the data sites.",
                     "ru": "Эта версия не читала данных с сайтов данных.", "zh": "此版本未从数据站点读取数据。"},
    "dataset": {"en": "Dataset", "ru": "Набор данных", "zh": "数据集"},
    "site": {"en": "Site", "ru": "Сайт", "zh": "站点"},
    "policy": {"en": "Policy", "ru": "Политика доступа", "zh": "访问策略"},
    "embargo": {"en": "Embargo until", "ru": "Эмбарго до", "zh": "禁运截止"},
    "no_embargo": {"en": "none", "ru": "нет", "zh": "无"},
    "checksum": {"en": "Checksum / version", "ru": "Контрольная сумма / версия", "zh": "校验和/版本"},
    "citation": {"en": "Citation", "ru": "Ссылка", "zh": "引用"},
    "license": {"en": "License", "ru": "Лицензия", "zh": "许可"},
    "seen_by": {"en": "Seen by", "ru": "Кем замечено", "zh": "记录来源"},
    "share_revoked": {"en": "Sharing was revoked for", "ru": "Доступ отозван для", "zh": "已撤销共享："},
    "revoked_because": {"en": "it is no longer entitled to", "ru": "у них больше нет права на",
                        "zh": "其已无权访问"},
    "embargoed_until": {"en": "embargoed until", "ru": "под эмбарго до", "zh": "禁运至"},
}

t = translator(TEXTS)
